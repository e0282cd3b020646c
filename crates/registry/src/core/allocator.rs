//! Allocators for service cluster IPs (from `--service-cidr`) and node ports
//! (30000–32767). State lives in memory and is rebuilt from the services in the store
//! at start; the store stays the source of truth.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use parking_lot::Mutex;
use rand::Rng;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AllocError {
    #[error("provided IP is already allocated")]
    IpInUse,
    #[error("provided IP is not in the valid range. The range of valid IPs is {0}")]
    IpOutOfRange(String),
    #[error("range is full")]
    Full,
    #[error("provided port is already allocated")]
    PortInUse,
    #[error("provided port is not in the valid range. The range of valid ports is {0}")]
    PortOutOfRange(String),
}

/// Cluster IP allocation within one IPv4 CIDR; network and broadcast addresses are skipped.
pub struct IpAllocator {
    net: Ipv4Net,
    used: Mutex<HashSet<u32>>,
}

impl IpAllocator {
    pub fn new(net: Ipv4Net) -> Self {
        IpAllocator {
            net,
            used: Mutex::new(HashSet::new()),
        }
    }

    pub fn cidr(&self) -> Ipv4Net {
        self.net
    }

    fn bounds(&self) -> (u32, u32) {
        let first = u32::from(self.net.network()) + 1;
        let last = u32::from(self.net.broadcast()).saturating_sub(1);
        (first, last)
    }

    /// The n-th usable address (`.1` is the `kubernetes` service).
    pub fn nth(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.net.network()) + n)
    }

    pub fn allocate(&self, ip: Ipv4Addr) -> Result<(), AllocError> {
        let (first, last) = self.bounds();
        let v = u32::from(ip);
        if v < first || v > last {
            return Err(AllocError::IpOutOfRange(self.net.to_string()));
        }
        if !self.used.lock().insert(v) {
            return Err(AllocError::IpInUse);
        }
        Ok(())
    }

    /// Picks a free address at random (upstream also allocates randomly, avoiding the
    /// lower band reserved for static assignment when the range is large enough).
    pub fn allocate_next(&self) -> Result<Ipv4Addr, AllocError> {
        let (first, last) = self.bounds();
        let size = (last - first + 1) as usize;
        let mut used = self.used.lock();
        if used.len() >= size {
            return Err(AllocError::Full);
        }
        // Reserve the lowest 1/16th (min 16, max 256) for static IPs, as upstream does.
        let static_band = ((size / 16).clamp(16, 256) as u32).min(size as u32 / 2);
        let mut rng = rand::thread_rng();
        for _ in 0..64 {
            let v = rng.gen_range(first + static_band..=last);
            if used.insert(v) {
                return Ok(Ipv4Addr::from(v));
            }
        }
        for v in (first + static_band..=last).chain(first..first + static_band) {
            if used.insert(v) {
                return Ok(Ipv4Addr::from(v));
            }
        }
        Err(AllocError::Full)
    }

    pub fn release(&self, ip: Ipv4Addr) {
        self.used.lock().remove(&u32::from(ip));
    }
}

/// Node port allocation in an inclusive range.
pub struct PortAllocator {
    first: u16,
    last: u16,
    used: Mutex<HashSet<u16>>,
}

impl PortAllocator {
    pub fn new(first: u16, last: u16) -> Self {
        PortAllocator {
            first,
            last,
            used: Mutex::new(HashSet::new()),
        }
    }

    pub fn range(&self) -> String {
        format!("{}-{}", self.first, self.last)
    }

    pub fn allocate(&self, port: u16) -> Result<(), AllocError> {
        if port < self.first || port > self.last {
            return Err(AllocError::PortOutOfRange(self.range()));
        }
        if !self.used.lock().insert(port) {
            return Err(AllocError::PortInUse);
        }
        Ok(())
    }

    pub fn allocate_next(&self) -> Result<u16, AllocError> {
        let mut used = self.used.lock();
        let size = (self.last - self.first) as usize + 1;
        if used.len() >= size {
            return Err(AllocError::Full);
        }
        let mut rng = rand::thread_rng();
        for _ in 0..64 {
            let p = rng.gen_range(self.first..=self.last);
            if used.insert(p) {
                return Ok(p);
            }
        }
        (self.first..=self.last)
            .find(|p| used.insert(*p))
            .ok_or(AllocError::Full)
    }

    pub fn release(&self, port: u16) {
        self.used.lock().remove(&port);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ips_are_unique_and_in_range() {
        let a = IpAllocator::new("10.43.0.0/28".parse().expect("cidr"));
        a.allocate(a.nth(1)).expect("first");
        assert_eq!(a.allocate(a.nth(1)), Err(AllocError::IpInUse));
        let mut seen = HashSet::new();
        while let Ok(ip) = a.allocate_next() {
            assert!(seen.insert(ip));
            assert!(a.cidr().contains(&ip));
        }
        assert_eq!(seen.len(), 13);
        assert!(matches!(
            a.allocate("10.44.0.1".parse().expect("ip")),
            Err(AllocError::IpOutOfRange(_))
        ));
    }

    #[test]
    fn ports_are_unique_and_in_range() {
        let a = PortAllocator::new(30000, 30009);
        a.allocate(30000).expect("static");
        assert_eq!(a.allocate(30000), Err(AllocError::PortInUse));
        let mut n = 0;
        while a.allocate_next().is_ok() {
            n += 1;
        }
        assert_eq!(n, 9);
        assert!(matches!(a.allocate(80), Err(AllocError::PortOutOfRange(_))));
    }
}

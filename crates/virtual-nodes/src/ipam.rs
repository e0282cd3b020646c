//! Address bookkeeping: pod CIDRs and fake InternalIPs for nodes (blocks carved from a
//! base range, skipping what other nodes already use), and pod IPs inside a node's
//! podCIDR (the way a bridge CNI plugin hands them out: `.1` is the gateway, the next
//! free address after the last one given, so a freed IP is not reused at once).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// Hands out blocks of one size from a base range, skipping used ranges.
#[derive(Debug)]
pub struct BlockAllocator {
    base: Ipv4Net,
    mask: u8,
    /// Used ranges, first address → last address (inclusive).
    used: BTreeMap<u32, u32>,
    /// Index of the next block to try; blocks before it were taken or skipped.
    cursor: u64,
}

impl BlockAllocator {
    /// `mask` must be at least `base.prefix_len()` (checked by the config).
    pub fn new(base: Ipv4Net, mask: u8) -> Self {
        BlockAllocator {
            base: base.trunc(),
            mask,
            used: BTreeMap::new(),
            cursor: 0,
        }
    }

    /// Marks `net` as taken (whether or not it lies inside the base range).
    pub fn reserve(&mut self, net: Ipv4Net) {
        let (start, end) = range(net);
        let end = self.used.get(&start).map_or(end, |e| (*e).max(end));
        self.used.insert(start, end);
    }

    /// The next free block, or `None` when the base range is full.
    pub fn allocate(&mut self) -> Option<Ipv4Net> {
        let blocks = 1u64 << (self.mask - self.base.prefix_len());
        let size = 1u64 << (32 - self.mask);
        while self.cursor < blocks {
            let start = u64::from(u32::from(self.base.network())) + self.cursor * size;
            self.cursor += 1;
            let start = u32::try_from(start).ok()?;
            let end = start.checked_add(u32::try_from(size - 1).ok()?)?;
            if !self.overlaps(start, end) {
                let net = Ipv4Net::new(Ipv4Addr::from(start), self.mask).ok()?;
                self.reserve(net);
                return Some(net);
            }
        }
        None
    }

    fn overlaps(&self, start: u32, end: u32) -> bool {
        // Used ranges come from distinct nodes and do not nest, so the last one starting
        // at or before `end` is the only candidate.
        self.used
            .range(..=end)
            .next_back()
            .is_some_and(|(_, used_end)| *used_end >= start)
    }
}

fn range(net: Ipv4Net) -> (u32, u32) {
    (u32::from(net.network()), u32::from(net.broadcast()))
}

/// Pod IPs of one node, keyed by pod UID.
#[derive(Debug)]
pub struct PodIpAllocator {
    cidr: Ipv4Net,
    by_uid: HashMap<String, Ipv4Addr>,
    taken: BTreeSet<u32>,
    /// Where the search for the next free address starts.
    next: u32,
}

impl PodIpAllocator {
    pub fn new(cidr: Ipv4Net) -> Self {
        let cidr = cidr.trunc();
        let (first, _) = Self::host_range(cidr);
        PodIpAllocator {
            cidr,
            by_uid: HashMap::new(),
            taken: BTreeSet::new(),
            next: first,
        }
    }

    pub fn cidr(&self) -> Ipv4Net {
        self.cidr
    }

    /// Usable pod addresses: network, gateway (`.1`) and broadcast excluded.
    fn host_range(cidr: Ipv4Net) -> (u32, u32) {
        let (net, bcast) = range(cidr);
        (net.saturating_add(2), bcast.saturating_sub(1))
    }

    /// The IP of pod `uid`, if it has one.
    pub fn get(&self, uid: &str) -> Option<Ipv4Addr> {
        self.by_uid.get(uid).copied()
    }

    /// The IP of pod `uid`: the one it has, else `preferred` (what its status already says,
    /// after a restart of this process) when free and in range, else the next free one.
    /// `None` when the podCIDR is full.
    pub fn assign(&mut self, uid: &str, preferred: Option<Ipv4Addr>) -> Option<Ipv4Addr> {
        if let Some(ip) = self.by_uid.get(uid) {
            return Some(*ip);
        }
        let (first, last) = Self::host_range(self.cidr);
        if first > last {
            return None;
        }
        let chosen = preferred
            .map(u32::from)
            .filter(|p| (first..=last).contains(p) && !self.taken.contains(p))
            .or_else(|| self.next_free(first, last))?;
        self.taken.insert(chosen);
        self.next = if chosen >= last { first } else { chosen + 1 };
        let ip = Ipv4Addr::from(chosen);
        self.by_uid.insert(uid.to_string(), ip);
        Some(ip)
    }

    fn next_free(&self, first: u32, last: u32) -> Option<u32> {
        let start = self.next.clamp(first, last);
        (start..=last)
            .chain(first..start)
            .find(|a| !self.taken.contains(a))
    }

    /// Frees the IP of pod `uid`.
    pub fn release(&mut self, uid: &str) -> Option<Ipv4Addr> {
        let ip = self.by_uid.remove(uid)?;
        self.taken.remove(&u32::from(ip));
        Some(ip)
    }

    /// Frees the IPs of pods for which `keep` is false.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        let gone: Vec<String> = self.by_uid.keys().filter(|u| !keep(u)).cloned().collect();
        for uid in gone {
            self.release(&uid);
        }
    }

    pub fn len(&self) -> usize {
        self.by_uid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_uid.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().expect("cidr")
    }

    #[test]
    fn blocks_skip_used_ranges_and_run_out() {
        let mut a = BlockAllocator::new(net("10.42.0.0/22"), 24);
        a.reserve(net("10.42.1.0/24"));
        a.reserve(net("192.168.0.0/16"));
        let got: Vec<_> = std::iter::from_fn(|| a.allocate()).collect();
        assert_eq!(
            got,
            vec![
                net("10.42.0.0/24"),
                net("10.42.2.0/24"),
                net("10.42.3.0/24")
            ]
        );
    }

    #[test]
    fn blocks_skip_a_larger_used_range() {
        let mut a = BlockAllocator::new(net("10.42.0.0/16"), 24);
        a.reserve(net("10.42.0.0/23"));
        assert_eq!(a.allocate(), Some(net("10.42.2.0/24")));
    }

    #[test]
    fn single_addresses_for_node_ips() {
        let mut a = BlockAllocator::new(net("100.64.0.0/10"), 32);
        a.reserve(net("100.64.0.0/32"));
        a.reserve(net("100.64.0.2/32"));
        assert_eq!(a.allocate(), Some(net("100.64.0.1/32")));
        assert_eq!(a.allocate(), Some(net("100.64.0.3/32")));
    }

    #[test]
    fn pod_ips_skip_gateway_and_are_not_reused_at_once() {
        let mut p = PodIpAllocator::new(net("10.42.3.0/29"));
        let a = p.assign("a", None).expect("a");
        assert_eq!(a, Ipv4Addr::new(10, 42, 3, 2));
        assert_eq!(p.assign("a", None), Some(a), "stable per uid");
        let b = p.assign("b", None).expect("b");
        assert_eq!(b, Ipv4Addr::new(10, 42, 3, 3));
        p.release("a");
        assert_eq!(p.assign("c", None), Some(Ipv4Addr::new(10, 42, 3, 4)));
        assert_eq!(p.assign("d", None), Some(Ipv4Addr::new(10, 42, 3, 5)));
        assert_eq!(p.assign("e", None), Some(Ipv4Addr::new(10, 42, 3, 6)));
        // Wraps around to the address freed by `a`; then the range is full.
        assert_eq!(p.assign("f", None), Some(a));
        assert_eq!(p.assign("g", None), None);
        assert_eq!(p.len(), 5);
    }

    #[test]
    fn pod_ips_adopt_what_status_says() {
        let mut p = PodIpAllocator::new(net("10.42.0.0/24"));
        let want = Ipv4Addr::new(10, 42, 0, 77);
        assert_eq!(p.assign("a", Some(want)), Some(want));
        // Taken, or outside the podCIDR: a fresh one instead.
        assert_ne!(p.assign("b", Some(want)), Some(want));
        assert_eq!(
            p.assign("c", Some(Ipv4Addr::new(10, 1, 0, 5)))
                .map(|ip| p.cidr().contains(&ip)),
            Some(true)
        );
        p.retain(|uid| uid == "a");
        assert_eq!(p.len(), 1);
        assert_eq!(p.get("a"), Some(want));
    }
}

//! The set of node pod CIDRs carved from the cluster CIDR (upstream
//! `nodeipam/ipam/cidrset`): a bitmap over the blocks of one prefix length, searched
//! round-robin from after the last block handed out, so a block just released is not
//! reused at once.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// Upstream refuses masks more than 16 bits longer than the cluster CIDR's.
const MAX_PREFIX_DIFF: u8 = 16;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrSetError {
    #[error("the node CIDR mask /{mask} must be between the cluster CIDR's /{cluster} and /{max}")]
    Mask { cluster: u8, mask: u8, max: u8 },
    #[error("CIDR allocation failed; there are no remaining CIDRs left to allocate in the accepted range")]
    Full,
    #[error("cidr {cidr} is out the range of cluster cidr {cluster}")]
    OutOfRange { cidr: Ipv4Net, cluster: Ipv4Net },
}

#[derive(Debug)]
pub struct CidrSet {
    cluster: Ipv4Net,
    mask: u8,
    used: Vec<bool>,
    next_candidate: usize,
    allocated: usize,
}

impl CidrSet {
    pub fn new(cluster: Ipv4Net, mask: u8) -> Result<Self, CidrSetError> {
        let cluster = cluster.trunc();
        let max = (cluster.prefix_len() + MAX_PREFIX_DIFF).min(32);
        if mask < cluster.prefix_len() || mask > max {
            return Err(CidrSetError::Mask {
                cluster: cluster.prefix_len(),
                mask,
                max,
            });
        }
        let blocks = 1usize << (mask - cluster.prefix_len());
        Ok(CidrSet {
            cluster,
            mask,
            used: vec![false; blocks],
            next_candidate: 0,
            allocated: 0,
        })
    }

    pub fn cluster(&self) -> Ipv4Net {
        self.cluster
    }

    fn block(&self, index: usize) -> Ipv4Net {
        let size = 1u64 << (32 - self.mask);
        let start = u64::from(u32::from(self.cluster.network())) + index as u64 * size;
        let start = u32::try_from(start).expect("invariant: blocks lie inside the cluster CIDR");
        Ipv4Net::new(Ipv4Addr::from(start), self.mask).expect("invariant: mask checked in new")
    }

    /// The next free block.
    pub fn allocate_next(&mut self) -> Result<Ipv4Net, CidrSetError> {
        let n = self.used.len();
        if self.allocated == n {
            return Err(CidrSetError::Full);
        }
        for i in 0..n {
            let candidate = (self.next_candidate + i) % n;
            if !self.used[candidate] {
                self.used[candidate] = true;
                self.allocated += 1;
                self.next_candidate = (candidate + 1) % n;
                return Ok(self.block(candidate));
            }
        }
        Err(CidrSetError::Full)
    }

    /// Indices of the blocks `cidr` covers (one block for a CIDR smaller than a block).
    fn indices(&self, cidr: Ipv4Net) -> Result<(usize, usize), CidrSetError> {
        let cidr = cidr.trunc();
        if !self.cluster.contains(&cidr.network()) && !cidr.contains(&self.cluster.network()) {
            return Err(CidrSetError::OutOfRange {
                cidr,
                cluster: self.cluster,
            });
        }
        let base = u32::from(self.cluster.network());
        let first = u32::from(cidr.network()).max(base);
        let last = u32::from(cidr.broadcast()).min(u32::from(self.cluster.broadcast()));
        let shift = 32 - u32::from(self.mask);
        let index = |addr: u32| ((addr - base) as u64 >> shift) as usize;
        Ok((index(first), index(last)))
    }

    /// Marks the blocks of `cidr` used (a node that brought its own podCIDR).
    pub fn occupy(&mut self, cidr: Ipv4Net) -> Result<(), CidrSetError> {
        let (first, last) = self.indices(cidr)?;
        for i in first..=last {
            if !self.used[i] {
                self.used[i] = true;
                self.allocated += 1;
            }
        }
        Ok(())
    }

    pub fn release(&mut self, cidr: Ipv4Net) -> Result<(), CidrSetError> {
        let (first, last) = self.indices(cidr)?;
        for i in first..=last {
            if self.used[i] {
                self.used[i] = false;
                self.allocated -= 1;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().expect("cidr")
    }

    #[test]
    fn blocks_are_handed_out_in_turn_skipping_occupied_ones() {
        let mut s = CidrSet::new(net("10.42.0.0/22"), 24).expect("set");
        s.occupy(net("10.42.0.0/24")).expect("occupy");
        assert_eq!(s.allocate_next(), Ok(net("10.42.1.0/24")));
        assert_eq!(s.allocate_next(), Ok(net("10.42.2.0/24")));
        s.release(net("10.42.1.0/24")).expect("release");
        // Round-robin: the released block comes after the untouched one.
        assert_eq!(s.allocate_next(), Ok(net("10.42.3.0/24")));
        assert_eq!(s.allocate_next(), Ok(net("10.42.1.0/24")));
        assert_eq!(s.allocate_next(), Err(CidrSetError::Full));
    }

    #[test]
    fn occupying_checks_the_range_and_covers_larger_cidrs() {
        let mut s = CidrSet::new(net("10.42.0.0/16"), 24).expect("set");
        assert!(matches!(
            s.occupy(net("10.43.0.0/24")),
            Err(CidrSetError::OutOfRange { .. })
        ));
        // A /23 covers two blocks; a /26 marks the block it lies in.
        s.occupy(net("10.42.0.0/23")).expect("occupy");
        s.occupy(net("10.42.2.64/26")).expect("occupy");
        assert_eq!(s.allocate_next(), Ok(net("10.42.3.0/24")));
        assert!(CidrSet::new(net("10.42.0.0/16"), 8).is_err());
        assert!(CidrSet::new(net("10.0.0.0/8"), 26).is_err());
    }
}

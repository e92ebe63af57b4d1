//! Which watcher polls which cluster when several share a fleet.
//!
//! Static sharding, as kube-state-metrics and Prometheus' `hashmod` do it: watcher `index`
//! of `total` polls the clusters whose name hashes to `index` modulo `total`. The hash is
//! 64-bit FNV-1a of the cluster's name followed by MurmurHash3's 64-bit finaliser (FNV alone
//! spreads names that differ only in their last characters poorly over small moduli). Both
//! are fixed by their definitions, not by a library's or a compiler's choice, so watchers
//! of different builds agree on who owns what.

use std::hash::Hasher;

/// The hash every watcher places a cluster name by.
pub fn hash(name: &str) -> u64 {
    let mut h = fnv::FnvHasher::default();
    h.write(name.as_bytes());
    fmix64(h.finish())
}

/// MurmurHash3's 64-bit finaliser: every input bit reaches every output bit.
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

/// One watcher's place among `total`: it owns the clusters that hash to `index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub total: u32,
}

impl Shard {
    /// The whole fleet: one watcher.
    pub const ALL: Shard = Shard { index: 0, total: 1 };

    pub fn new(index: u32, total: u32) -> Result<Shard, String> {
        if total == 0 {
            return Err("the total number of shards must be at least 1".into());
        }
        if index >= total {
            return Err(format!(
                "shard {index} does not exist among {total} (shards are numbered 0 to {})",
                total - 1
            ));
        }
        Ok(Shard { index, total })
    }

    /// The shard of a StatefulSet's pod, from the ordinal its name ends with
    /// (`pgpatrol-watch-2` is shard 2), as kube-state-metrics' automatic sharding reads it.
    pub fn of_pod(pod: &str, total: u32) -> Result<Shard, String> {
        let ordinal = pod
            .rsplit_once('-')
            .and_then(|(_, n)| n.parse::<u32>().ok())
            .ok_or_else(|| {
                format!("the pod name {pod:?} does not end in a StatefulSet ordinal (`NAME-N`)")
            })?;
        Shard::new(ordinal, total).map_err(|e| format!("pod {pod:?}: {e}"))
    }

    /// The StatefulSet a pod belongs to, by its name (everything before the ordinal).
    pub fn statefulset_of_pod(pod: &str) -> Option<&str> {
        pod.rsplit_once('-')
            .filter(|(set, n)| !set.is_empty() && n.parse::<u32>().is_ok())
            .map(|(set, _)| set)
    }

    pub fn owns(&self, cluster: &str) -> bool {
        hash(cluster) % u64::from(self.total) == u64::from(self.index)
    }
}

/// A consistent-hash ring of watchers (dynamic sharding): each watcher stands at
/// [`VNODES`] points, a cluster belongs to the first `r` distinct watchers clockwise from its
/// own point. When a watcher leaves, only its clusters move (to the next ones on the ring);
/// when one joins, it takes about `1/n` of the clusters, from every other watcher a little.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ring {
    points: Vec<(u64, usize)>,
    members: Vec<String>,
}

/// Points per watcher: with 64, three watchers own shares within a few percent of a third.
pub const VNODES: u32 = 64;

impl Ring {
    pub fn new(members: impl IntoIterator<Item = String>) -> Ring {
        let mut members: Vec<String> = members.into_iter().collect();
        members.sort();
        members.dedup();
        let mut points: Vec<(u64, usize)> = members
            .iter()
            .enumerate()
            .flat_map(|(i, m)| (0..VNODES).map(move |v| (hash(&format!("{m}#{v}")), i)))
            .collect();
        points.sort_unstable();
        Ring { points, members }
    }

    pub fn members(&self) -> &[String] {
        &self.members
    }

    /// The first `r` distinct watchers clockwise from `key`'s point (fewer when fewer
    /// watchers are on the ring).
    pub fn owners(&self, key: &str, r: usize) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::with_capacity(r);
        if self.points.is_empty() {
            return out;
        }
        let h = hash(key);
        let start = self.points.partition_point(|(p, _)| *p < h);
        for i in 0..self.points.len() {
            let (_, m) = self.points[(start + i) % self.points.len()];
            let name = self.members[m].as_str();
            if !out.contains(&name) {
                out.push(name);
                if out.len() == r {
                    break;
                }
            }
        }
        out
    }

    pub fn owns(&self, member: &str, key: &str, r: usize) -> bool {
        self.owners(key, r).contains(&member)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("cluster-{i:05}")).collect()
    }

    #[test]
    fn the_hash_is_fixed_by_its_definition() {
        // FNV-1a 64 of "" is its offset basis; of "a" the published test vector.
        assert_eq!(fmix64(0xcbf2_9ce4_8422_2325), hash(""));
        assert_eq!(fmix64(0xaf63_dc4c_8601_ec8c), hash("a"));
        // Pinned (computed apart, in Python): a change here would move clusters between
        // watchers of different builds.
        assert_eq!(hash("demo"), 0x331d_1022_b2a9_555e);
        let of = |c: &str| (0..3).find(|i| Shard::new(*i, 3).unwrap().owns(c));
        let shards: Vec<_> = names(6).iter().map(|c| of(c)).collect();
        assert_eq!(shards, [0, 1, 1, 1, 2, 0].map(Some));
    }

    #[test]
    fn every_cluster_has_exactly_one_shard() {
        for total in 1..=7 {
            let shards: Vec<Shard> = (0..total).map(|i| Shard::new(i, total).unwrap()).collect();
            for name in names(2000) {
                let owners = shards.iter().filter(|s| s.owns(&name)).count();
                assert_eq!(owners, 1, "{name} among {total}");
            }
        }
    }

    #[test]
    fn shards_are_balanced() {
        // 10,000 names over 3 shards: each within 5 % of a third.
        let all = names(10_000);
        for i in 0..3 {
            let s = Shard::new(i, 3).unwrap();
            let n = all.iter().filter(|c| s.owns(c)).count();
            assert!((3_167..=3_500).contains(&n), "shard {i} owns {n}");
        }
    }

    #[test]
    fn bad_shards_and_pod_names_are_named() {
        assert!(Shard::new(0, 0).unwrap_err().contains("at least 1"));
        assert!(Shard::new(3, 3).unwrap_err().contains("0 to 2"));
        assert_eq!(
            Shard::of_pod("pgpatrol-watch-2", 3).unwrap(),
            Shard::new(2, 3).unwrap()
        );
        assert!(Shard::of_pod("pgpatrol-watch-3", 3)
            .unwrap_err()
            .contains("0 to 2"));
        assert!(Shard::of_pod("pgpatrol-watch", 3)
            .unwrap_err()
            .contains("ordinal"));
        assert!(Shard::of_pod("watch-x", 3).unwrap_err().contains("ordinal"));
        assert_eq!(
            Shard::statefulset_of_pod("pgpatrol-watch-2"),
            Some("pgpatrol-watch")
        );
        assert_eq!(Shard::statefulset_of_pod("pgpatrol"), None);
        assert_eq!(Shard::statefulset_of_pod("-2"), None);
    }

    fn ring(members: &[&str]) -> Ring {
        Ring::new(members.iter().map(|m| m.to_string()))
    }

    #[test]
    fn a_ring_gives_every_cluster_r_distinct_owners_and_balances() {
        let r3 = ring(&["w-a", "w-b", "w-c"]);
        let all = names(3000);
        for name in &all {
            let one = r3.owners(name, 1);
            assert_eq!(one.len(), 1);
            let two = r3.owners(name, 2);
            assert_eq!(two.len(), 2);
            assert_ne!(two[0], two[1]);
            assert_eq!(two[0], one[0], "the first owner is the same for any r");
            assert_eq!(r3.owners(name, 5).len(), 3, "no more owners than watchers");
        }
        for m in r3.members() {
            let n = all.iter().filter(|c| r3.owns(m, c, 1)).count();
            assert!((700..=1300).contains(&n), "{m} owns {n} of 3000");
        }
        assert!(Ring::new(Vec::new()).owners("x", 1).is_empty());
    }

    #[test]
    fn a_watcher_leaving_moves_only_its_clusters_and_one_joining_takes_a_share() {
        let before = ring(&["w-a", "w-b", "w-c"]);
        let after = ring(&["w-a", "w-c"]);
        let all = names(3000);
        for name in &all {
            let (was, now) = (before.owners(name, 1)[0], after.owners(name, 1)[0]);
            if was != "w-b" {
                assert_eq!(was, now, "{name} moved though its owner stayed");
            }
        }
        let joined = ring(&["w-a", "w-b", "w-c", "w-d"]);
        let moved: Vec<&String> = all
            .iter()
            .filter(|c| before.owners(c, 1)[0] != joined.owners(c, 1)[0])
            .collect();
        assert!(
            moved.iter().all(|c| joined.owners(c, 1)[0] == "w-d"),
            "what moves goes to the newcomer"
        );
        assert!((450..=1050).contains(&moved.len()), "{} moved", moved.len());
        // The order of the members given does not matter.
        assert_eq!(ring(&["w-c", "w-a", "w-b"]), before);
    }
}

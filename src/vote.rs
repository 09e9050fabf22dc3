//! The majority vote: a pure function from the replicas' comparison keys to groups of agreeing replicas
//! and, when one group holds a strict majority (more than N/2), the winner. No processes, no I/O.

/// Replicas whose keys are equal, listed in replica order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group<K> {
    pub key: K,
    pub members: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vote<K> {
    /// Largest group first; equal sizes in order of their lowest replica, so the order never depends on
    /// anything but the keys.
    pub groups: Vec<Group<K>>,
    /// Index into `groups` of the strict-majority group, if there is one.
    pub winner: Option<usize>,
    pub replicas: usize,
}

/// Group equal keys and find a strict majority. A tie (e.g. 2 vs 2 of 4) never picks a winner.
pub fn vote<K: Eq + Clone>(keys: &[K]) -> Vote<K> {
    let mut groups: Vec<Group<K>> = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        match groups.iter_mut().find(|g| &g.key == k) {
            Some(g) => g.members.push(i),
            None => groups.push(Group { key: k.clone(), members: vec![i] }),
        }
    }
    groups.sort_by(|a, b| b.members.len().cmp(&a.members.len()).then(a.members[0].cmp(&b.members[0])));
    let winner = groups.first().filter(|g| 2 * g.members.len() > keys.len()).map(|_| 0);
    Vote { groups, winner, replicas: keys.len() }
}

impl<K> Vote<K> {
    pub fn majority(&self) -> Option<&Group<K>> {
        self.winner.map(|w| &self.groups[w])
    }

    /// The replica whose output is delivered: the lowest-numbered member of the majority. It is always one
    /// of the first ⌊N/2⌋+1 replicas, because a majority cannot fit in the others.
    pub fn representative(&self) -> Option<usize> {
        self.majority().map(|g| g.members[0])
    }

    pub fn unanimous(&self) -> bool {
        self.groups.len() == 1
    }

    /// Replicas outside the majority (all replicas when there is none), in replica order.
    pub fn dissenters(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self
            .groups
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != self.winner)
            .flat_map(|(_, g)| g.members.iter().copied())
            .collect();
        v.sort_unstable();
        v
    }

    /// The group a replica belongs to.
    pub fn group_of(&self, replica: usize) -> usize {
        self.groups.iter().position(|g| g.members.contains(&replica)).expect("every replica is in a group")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn two_of_three_wins_and_the_third_dissents() {
        let v = vote(&['a', 'b', 'a']);
        assert_eq!(v.majority().unwrap().members, vec![0, 2]);
        assert_eq!(v.representative(), Some(0));
        assert_eq!(v.dissenters(), vec![1]);
        assert!(!v.unanimous());
    }

    #[test]
    fn ties_and_all_distinct_have_no_winner() {
        assert_eq!(vote(&['a', 'b', 'c']).winner, None);
        assert_eq!(vote(&['a', 'a', 'b', 'b']).winner, None);
        assert_eq!(vote(&['a', 'b', 'c']).dissenters(), vec![0, 1, 2]);
    }

    #[test]
    fn one_replica_is_its_own_majority() {
        let v = vote(&['x']);
        assert!(v.unanimous());
        assert_eq!(v.representative(), Some(0));
    }

    proptest! {
        #[test]
        fn strict_majority_always_wins(keys in prop::collection::vec(0u8..3, 1..9)) {
            let v = vote(&keys);
            for k in 0u8..3 {
                let count = keys.iter().filter(|&&x| x == k).count();
                if 2 * count > keys.len() {
                    prop_assert_eq!(v.majority().map(|g| g.key), Some(k));
                }
            }
            if let Some(g) = v.majority() {
                prop_assert!(2 * g.members.len() > keys.len());
                prop_assert!(g.members.iter().all(|&i| keys[i] == g.key));
                // The delivered replica is always one of the first ⌊N/2⌋+1.
                prop_assert!(v.representative().unwrap() <= keys.len() / 2);
            } else {
                prop_assert!(v.groups.iter().all(|g| 2 * g.members.len() <= keys.len()));
            }
        }

        #[test]
        fn the_winning_key_does_not_depend_on_replica_order(
            keys in prop::collection::vec(0u8..3, 1..9),
            seed in any::<u64>(),
        ) {
            let mut shuffled = keys.clone();
            // Deterministic Fisher-Yates from the seed.
            let mut s = seed | 1;
            for i in (1..shuffled.len()).rev() {
                s ^= s << 13; s ^= s >> 7; s ^= s << 17;
                shuffled.swap(i, (s % (i as u64 + 1)) as usize);
            }
            let a = vote(&keys);
            let b = vote(&shuffled);
            prop_assert_eq!(a.majority().map(|g| g.key), b.majority().map(|g| g.key));
            let mut sa: Vec<usize> = a.groups.iter().map(|g| g.members.len()).collect();
            let mut sb: Vec<usize> = b.groups.iter().map(|g| g.members.len()).collect();
            sa.sort_unstable(); sb.sort_unstable();
            prop_assert_eq!(sa, sb);
        }
    }
}

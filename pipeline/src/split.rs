//! Watch sequences per user and the leave-last-out split of EVAL.md section 1.

use crate::data::Events;
use rayon::prelude::*;

/// EVAL.md section 1's tie-break for watches sharing a timestamp: splitmix64 of
/// `(user_id << 32) + item_id` on wrapping u64. It knows nothing of the catalogue's numbering
/// (ordering ties by item id made the held-out watch of a burst its newest, least watched film).
pub fn tie_order(user_id: i64, item_id: i64) -> u64 {
    let mut x = ((user_id as u64) << 32).wrapping_add(item_id as u64);
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Every user's watched events ordered by (timestamp, [`tie_order`]), in CSR layout; users
/// ascending.
#[derive(Debug, Clone, Default)]
pub struct WatchSequences {
    /// User ids, ascending.
    pub users: Vec<i64>,
    /// `offsets[u]..offsets[u + 1]` indexes user `u`'s watches (len = users + 1).
    pub offsets: Vec<usize>,
    /// Watched item ids.
    pub items: Vec<i64>,
    /// Their timestamps (Unix seconds).
    pub times: Vec<i64>,
    /// The row of `events` each watch came from.
    pub rows: Vec<u32>,
}

impl WatchSequences {
    /// The watched events of `events` (`watched = true`), grouped by user and ordered by
    /// (timestamp, [`tie_order`]).
    pub fn from_events(events: &Events) -> Self {
        let mut idx: Vec<u32> = (0..events.len() as u32)
            .filter(|&i| events.watched[i as usize])
            .collect();
        idx.par_sort_unstable_by_key(|&i| {
            let i = i as usize;
            let (u, item) = (events.user_id[i], events.item_id[i]);
            (u, events.timestamp[i], tie_order(u, item), item, i)
        });
        let mut seq = WatchSequences {
            offsets: vec![0],
            ..Default::default()
        };
        seq.items.reserve(idx.len());
        seq.times.reserve(idx.len());
        for &i in &idx {
            let i = i as usize;
            let u = events.user_id[i];
            if seq.users.last() != Some(&u) {
                if !seq.users.is_empty() {
                    seq.offsets.push(seq.items.len());
                }
                seq.users.push(u);
            }
            seq.items.push(events.item_id[i]);
            seq.times.push(events.timestamp[i]);
            seq.rows.push(i as u32);
        }
        if !seq.users.is_empty() {
            seq.offsets.push(seq.items.len());
        }
        seq
    }

    /// Number of users.
    pub fn num_users(&self) -> usize {
        self.users.len()
    }

    /// User number `u`'s items and times.
    pub fn user(&self, u: usize) -> (&[i64], &[i64]) {
        let r = self.offsets[u]..self.offsets[u + 1];
        (&self.items[r.clone()], &self.times[r])
    }

    /// User number `u`'s event rows (aligned with [`WatchSequences::user`]).
    pub fn rows_of(&self, u: usize) -> &[u32] {
        &self.rows[self.offsets[u]..self.offsets[u + 1]]
    }
}

/// EVAL.md section 1: users with at least 3 watches; for each, the last watch is the test target,
/// the second-to-last the validation target, all earlier watches the training history.
#[derive(Debug, Clone)]
pub struct LeaveLastOut {
    /// The kept users' full sequences (the last two watches of each are held out).
    pub sequences: WatchSequences,
}

/// Fewest watches a user needs to be evaluated.
pub const MIN_WATCHES: usize = 3;

impl LeaveLastOut {
    /// Splits the watched events of `events`.
    pub fn new(events: &Events) -> Self {
        Self::from_sequences(&WatchSequences::from_events(events))
    }

    /// Keeps the users of `all` with at least [`MIN_WATCHES`] watches.
    pub fn from_sequences(all: &WatchSequences) -> Self {
        let mut seq = WatchSequences {
            offsets: vec![0],
            ..Default::default()
        };
        for u in 0..all.num_users() {
            let (items, times) = all.user(u);
            if items.len() >= MIN_WATCHES {
                seq.users.push(all.users[u]);
                seq.items.extend_from_slice(items);
                seq.times.extend_from_slice(times);
                seq.rows.extend_from_slice(all.rows_of(u));
                seq.offsets.push(seq.items.len());
            }
        }
        LeaveLastOut { sequences: seq }
    }

    /// Number of evaluated users.
    pub fn num_users(&self) -> usize {
        self.sequences.num_users()
    }

    /// User `u`'s training history (items, times): everything before the last two watches.
    pub fn train(&self, u: usize) -> (&[i64], &[i64]) {
        let (i, t) = self.sequences.user(u);
        (&i[..i.len() - 2], &t[..t.len() - 2])
    }

    /// User `u`'s history for the final test figure: training plus the validation watch.
    pub fn train_and_validation(&self, u: usize) -> (&[i64], &[i64]) {
        let (i, t) = self.sequences.user(u);
        (&i[..i.len() - 1], &t[..t.len() - 1])
    }

    /// User `u`'s validation target (item, time).
    pub fn validation(&self, u: usize) -> (i64, i64) {
        let (i, t) = self.sequences.user(u);
        (i[i.len() - 2], t[t.len() - 2])
    }

    /// User `u`'s test target (item, time).
    pub fn test(&self, u: usize) -> (i64, i64) {
        let (i, t) = self.sequences.user(u);
        (i[i.len() - 1], t[t.len() - 1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Event;

    fn ev(user: i64, item: i64, ts: i64, watched: bool) -> Event {
        Event {
            user_id: user,
            item_id: item,
            timestamp: ts,
            watched,
            watch_time: None,
            rating: None,
        }
    }

    #[test]
    fn tie_order_is_evals_splitmix64() {
        // splitmix64(0) = 0xE220A8397B1DCDAF, the reference generator's first output for seed 0.
        assert_eq!(tie_order(0, 0), 0xE220_A839_7B1D_CDAF);
        // (1 << 32) + 5 and (0 << 32) + 5 differ: the user is part of the key.
        assert_ne!(tie_order(1, 5), tie_order(0, 5));
    }

    #[test]
    fn hand_made_split() {
        let mut e = Events::default();
        // User 2: four watches out of order, a tie at t=20 broken by the hash, one unwatched.
        assert!(
            tie_order(2, 30) < tie_order(2, 20),
            "the test below assumes this order"
        );
        for x in [
            ev(2, 30, 20, true),
            ev(2, 10, 40, true),
            ev(2, 50, 10, true),
            ev(2, 20, 20, true),
            ev(2, 99, 5, false),
            // User 1: only two watches -> dropped.
            ev(1, 1, 1, true),
            ev(1, 2, 2, true),
            // User 3: exactly three.
            ev(3, 7, 3, true),
            ev(3, 8, 2, true),
            ev(3, 9, 1, true),
        ] {
            e.push(x);
        }
        let s = LeaveLastOut::new(&e);
        assert_eq!(s.sequences.users, vec![2, 3]);
        // At t=20 item 30 comes before item 20 (the hash, not the id, orders them).
        assert_eq!(s.train(0).0, &[50, 30]);
        assert_eq!(s.validation(0), (20, 20));
        assert_eq!(s.test(0), (10, 40));
        assert_eq!(s.train_and_validation(0).0, &[50, 30, 20]);
        assert_eq!(s.train(1).0, &[9]);
        assert_eq!(s.validation(1).0, 8);
        assert_eq!(s.test(1).0, 7);
    }
}

//! Quality measurement exactly as `EVAL.md` fixes it.

pub mod leaderboard;
pub mod ranking;
pub mod rating;

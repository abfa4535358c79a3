//! Synthetic data shared by the unit tests of the rating models.

use nn::rating::Ratings;
use nn::rng::Rng;

/// Ratings from hidden rank-2 tastes plus user and item biases of standard deviation
/// `bias_std`: r = 3 + a_u + c_i + x_u . y_i, each pair observed with probability 0.5, then
/// split 80/20 into training and validation; seeded.
pub(crate) fn low_rank_ratings(
    users: usize,
    items: usize,
    bias_std: f64,
    seed: u64,
) -> (Ratings, Ratings) {
    let mut rng = Rng::new(seed);
    let mut draw = |n: usize| -> Vec<[f32; 3]> {
        (0..n)
            .map(|_| {
                [
                    (bias_std * rng.normal()) as f32,
                    rng.normal() as f32,
                    rng.normal() as f32,
                ]
            })
            .collect()
    };
    let (x, y) = (draw(users), draw(items));
    let (mut train, mut valid) = (Ratings::default(), Ratings::default());
    for (u, xu) in x.iter().enumerate() {
        for (i, yi) in y.iter().enumerate() {
            if rng.uniform() < 0.5 {
                let part = if rng.uniform() < 0.8 {
                    &mut train
                } else {
                    &mut valid
                };
                part.users.push(u as u32);
                part.items.push(i as u32);
                part.values
                    .push(3.0 + xu[0] + yi[0] + xu[1] * yi[1] + xu[2] * yi[2]);
            }
        }
    }
    (train, valid)
}

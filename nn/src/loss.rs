//! Pointwise and pairwise losses as candle graphs (the softmax losses over a catalogue live in
//! [`crate::softmax`]). Each returns a scalar tensor to call `backward` on.

use candle_core::Tensor;

use crate::error::Result;

/// `log(1 + e^z)` computed without overflow: `max(z, 0) + log(1 + e^-|z|)`.
fn softplus(z: &Tensor) -> Result<Tensor> {
    let tail = z.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?;
    Ok((z.relu()? + tail)?)
}

/// Weighted binary cross-entropy on logits, summed: `sum_i w_i (log(1 + e^z_i) - y_i z_i)`.
///
/// With w = watch time on positives and 1 on negatives this is the weighted logistic
/// regression of Covington et al. 2016, §4.2, whose odds e^z estimate the expected watch time.
pub fn weighted_bce_sum(logits: &Tensor, labels: &Tensor, weights: &Tensor) -> Result<Tensor> {
    let loss = (softplus(logits)? - (logits * labels)?)?;
    Ok((loss * weights)?.sum_all()?)
}

/// The same loss for one logit, in f64 (for evaluating held-out data without a graph).
pub fn logistic_loss(logit: f64, label: f64) -> f64 {
    logit.max(0.0) - logit * label + (-logit.abs()).exp().ln_1p()
}

/// Multinomial log-likelihood of Liang et al. 2018 (Mult-VAE, eq. 2), negated and averaged
/// over rows: `-mean_u sum_i x_ui log softmax(z_u)_i` for `[users, items]` logits and counts.
pub fn multinomial_nll(logits: &Tensor, counts: &Tensor) -> Result<Tensor> {
    let log_p = candle_nn::ops::log_softmax(logits, 1)?;
    Ok((log_p * counts)?.sum(1)?.neg()?.mean_all()?)
}

/// Squared error on observed entries only, `sum_i m_i (p_i - r_i)^2 / sum_i m_i` (AutoRec,
/// Sedhain et al. 2015, eq. 2: unobserved ratings carry no error). `mask` is 1 on observed
/// entries and 0 elsewhere; an all-zero mask gives 0.
pub fn masked_mse(predictions: &Tensor, targets: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let err = ((predictions - targets)?.sqr()? * mask)?.sum_all()?;
    let count = mask.sum_all()?.maximum(1.0)?;
    Ok(err.div(&count)?)
}

/// Bayesian personalised ranking (Rendle et al. 2009, eq. 4 without the prior), averaged:
/// `mean -log sigmoid(s_pos - s_neg) = mean log(1 + e^-(s_pos - s_neg))`.
pub fn bpr(positive: &Tensor, negative: &Tensor) -> Result<Tensor> {
    let diff = (positive - negative)?;
    Ok(softplus(&diff.neg()?)?.mean_all()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn t(v: &[f32]) -> Tensor {
        Tensor::from_slice(v, v.len(), &Device::Cpu).unwrap()
    }

    fn scalar(x: Tensor) -> f32 {
        x.to_scalar::<f32>().unwrap()
    }

    #[test]
    fn weighted_bce_matches_the_formula() {
        let z = [2.0f32, -1.0, 30.0];
        let y = [1.0f32, 0.0, 0.0];
        let w = [3.0f32, 1.0, 0.5];
        let got = scalar(weighted_bce_sum(&t(&z), &t(&y), &t(&w)).unwrap());
        let want: f64 = (0..3)
            .map(|i| w[i] as f64 * logistic_loss(z[i] as f64, y[i] as f64))
            .sum();
        assert!((got as f64 - want).abs() < 1e-4, "{got} vs {want}");
        // Large logits stay finite: log(1 + e^30) ~ 30.
        assert!((logistic_loss(30.0, 0.0) - 30.0).abs() < 1e-9);
    }

    #[test]
    fn masked_mse_ignores_unobserved_entries() {
        let p = t(&[1.0, 5.0, 3.0]);
        let r = t(&[2.0, 0.0, 3.0]);
        let m = t(&[1.0, 0.0, 1.0]);
        // (1 - 2)^2 over 2 observed entries; the 25 of the masked entry is not counted.
        assert!((scalar(masked_mse(&p, &r, &m).unwrap()) - 0.5).abs() < 1e-6);
        assert_eq!(scalar(masked_mse(&p, &r, &t(&[0.0; 3])).unwrap()), 0.0);
    }

    #[test]
    fn multinomial_nll_is_cross_entropy_with_counts() {
        let logits = Tensor::from_slice(&[0.0f32, 0.0, 0.0, 0.0], (1, 4), &Device::Cpu).unwrap();
        let counts = Tensor::from_slice(&[1.0f32, 0.0, 2.0, 0.0], (1, 4), &Device::Cpu).unwrap();
        // Uniform softmax: each observed count costs log 4.
        let want = 3.0 * 4f32.ln();
        assert!((scalar(multinomial_nll(&logits, &counts).unwrap()) - want).abs() < 1e-5);
    }

    #[test]
    fn bpr_prefers_positive_above_negative() {
        let good = scalar(bpr(&t(&[3.0]), &t(&[0.0])).unwrap());
        let bad = scalar(bpr(&t(&[0.0]), &t(&[3.0])).unwrap());
        assert!(good < bad);
        assert!((scalar(bpr(&t(&[1.0]), &t(&[1.0])).unwrap()) - 2f32.ln()).abs() < 1e-6);
    }
}

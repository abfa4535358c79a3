//! Scoring on a device (`rerank --device cuda:N`): every ranker's candle-op scoring, run here
//! on the CPU, gives the logits of its CPU scoring path (the fused passes), for every task.

use candle_core::Device;
use nn::Compute;

use crate::feature_ranker::testkit::{xor_schema, xor_world};
use crate::registry::{RankerSettings, MODELS};
use crate::RankingError;

#[test]
fn every_ranker_scores_the_same_in_candle_ops() -> Result<(), RankingError> {
    let mut examples = xor_world(7, 600);
    for (k, e) in examples.iter_mut().enumerate() {
        e.labels = vec![f32::from(u8::from(e.label && k % 3 > 0))];
    }
    let (valid, fit) = examples.split_at(150);
    for &model in MODELS {
        let mut settings = RankerSettings {
            model: model.to_string(),
            labels: vec!["is_like".into()],
            ..RankerSettings::default()
        };
        settings.youtube.epochs = 2;
        settings.deepfm.epochs = 2;
        settings.dcn_v2.epochs = 2;
        settings.multitask.epochs = 2;
        settings.multitask.labels = vec!["is_like".into()];
        settings.neumf.epochs = 2;
        settings.deep_mf.epochs = 2;
        let (mut ranker, _) = settings.train(xor_schema(), fit, valid, &mut |_| {})?;
        let cpu = ranker.task_logits(valid)?;
        let cpu_watch = ranker.logits(valid)?;
        ranker.score_with(&Compute::Candle(Device::Cpu))?;
        let candle = ranker.task_logits(valid)?;
        let candle_watch = ranker.logits(valid)?;
        assert_eq!(cpu.len(), ranker.task_names().len(), "{model}");
        let tasks = if model == crate::multitask::KIND {
            2
        } else {
            1
        };
        assert_eq!(cpu.len(), tasks, "{model}");
        let spread = cpu_watch
            .iter()
            .fold(0f32, |m, x| m.max((x - cpu_watch[0]).abs()));
        assert!(spread > 1e-3, "{model}: the logits vary ({spread})");
        for (a, b) in cpu
            .iter()
            .chain([&cpu_watch])
            .zip(candle.iter().chain([&candle_watch]))
        {
            assert_eq!(a.len(), valid.len(), "{model}");
            let worst = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs() / (1.0 + x.abs()))
                .fold(0f32, f32::max);
            assert!(worst < 1e-5, "{model}: logits differ by {worst}");
        }
        // Back to the CPU path.
        ranker.score_with(&Compute::FusedCpu)?;
        assert_eq!(ranker.logits(valid)?, cpu_watch, "{model}");
    }
    Ok(())
}

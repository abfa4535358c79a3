//! Candidate generators for recpipe, one file (or folder) per model, on the shared `nn` core:
//!
//! - [`youtube_dnn`]: the retrieval network of Covington, Adams and Sargin, "Deep Neural
//!   Networks for YouTube Recommendations" (RecSys 2016), section 3;
//! - [`mf`]: matrix factorisation as a network (the baseline);
//! - the user-row autoencoders on [`autoencoder`]: [`mult_vae`] and [`mult_dae`] (Liang et
//!   al. 2018), [`cdae`] (Wu et al. 2016) and U-AutoRec on implicit rows, [`autorec`]
//!   (Sedhain et al. 2015); [`cfgan`]'s generator (Chae et al. 2018), trained against a
//!   discriminator;
//! - [`gmf`]: NCF's generalised MF (He et al. 2017) trained with the log loss on sampled
//!   negatives; NCF's MLP and NeuMF train beside it ([`RetrievalSettings::train_pair_model`])
//!   but score pairs, so only the NCF protocol measures them;
//! - [`sasrec`]: SASRec, causal self-attention over the watch sequence (Kang and McAuley,
//!   "Self-Attentive Sequential Recommendation", ICDM 2018), the user vector being the last
//!   position's output;
//! - [`gru4rec`]: GRU4Rec, a GRU over the watch sequence (Hidasi et al., "Session-based
//!   Recommendations with Recurrent Neural Networks", ICLR 2016), the user vector being the
//!   state after the last watch;
//! - [`two_tower`]: a user tower and an item tower over item ids and features (tokens,
//!   duration, publication age) trained with a logQ-corrected in-batch plus sampled softmax
//!   (Yi et al., RecSys 2019), the one model that embeds items it was not trained on.
//!
//! The two sequence models share their windows, serving and training ([`sequence`]).
//!
//! Every model implements [`nn::Retriever`]: a user vector `u` for any history, item vectors
//! `v_j` and biases `b_j`, score = `u . v_j + b_j`, so that an inner-product index serves it.
//! [`RetrievalSettings`] picks and trains one by name; [`load`] reads any saved one.
//!
//! The crate takes and returns plain Rust values; it reads and writes only its own weights.

#![warn(missing_docs)]

pub mod autoencoder;
pub mod autorec;
pub mod cdae;
pub mod cfgan;
pub mod error;
pub mod files;
pub mod fold_in;
pub mod gmf;
pub mod gru4rec;
pub mod mf;
pub mod mult_dae;
pub mod mult_vae;
pub mod registry;
pub mod sasrec;
pub mod sequence;
pub mod two_tower;
pub mod warm;
pub mod youtube_dnn;

pub use error::{Result, RetrievalError};
pub use files::{CONFIG_FILE, WEIGHTS_FILE};
pub use mf::{Mf, MfConfig};
pub use nn::{
    target_rank, Catalog, EpochReport, Example, RankMetrics, Retriever, TrainReport, TrainingSet,
    UserFeatures, UserQuery, ValidationCase, WatchHistories,
};
pub use registry::{load, DynRetriever, RetrievalSettings, MODELS, PAIR_MODELS};
pub use two_tower::{TwoTower, TwoTowerConfig};
pub use warm::WarmStart;
pub use youtube_dnn::{YoutubeDnn, YoutubeDnnConfig};

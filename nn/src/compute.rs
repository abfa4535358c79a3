//! Where a model computes: on the CPU with this crate's fused kernels (the default), or with
//! candle's own ops on any device, which is how a model trains on an NVIDIA GPU.
//!
//! The fused CPU kernels (embedding bags read straight from a table's storage, the in-place
//! AdamW, the one-pass softmax cross-entropy) touch CPU memory directly. Each has a formulation
//! with candle ops only ([`crate::portable`], [`crate::optim`]'s device branch), which runs
//! wherever candle runs: [`Compute::Candle`] selects it. On the CPU it is slower than the fused
//! kernels and serves as their reference: tests train the same model both ways and compare.

use candle_core::{Device, DeviceLocation};

use crate::error::{invalid, Result};

/// How a model computes (see the module doc).
#[derive(Debug, Clone, Default)]
pub enum Compute {
    /// The fused CPU kernels.
    #[default]
    FusedCpu,
    /// candle ops only, on this device (a CUDA GPU, or the CPU as the fused kernels' reference).
    Candle(Device),
}

impl PartialEq for Compute {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::FusedCpu, Self::FusedCpu) => true,
            (Self::Candle(a), Self::Candle(b)) => a.same_device(b),
            _ => false,
        }
    }
}

impl Compute {
    /// Parses a device name: `cpu`, or `cuda` / `cuda:N` (the N-th GPU). A CUDA device needs
    /// a binary built with the `cuda` feature and a GPU its driver can open; the error says
    /// which is missing.
    pub fn parse(name: &str) -> Result<Self> {
        let name = name.trim();
        if name == "cpu" {
            return Ok(Self::FusedCpu);
        }
        let ordinal = match name.strip_prefix("cuda") {
            Some("") => 0,
            Some(rest) => rest
                .strip_prefix(':')
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| bad_name(name))?,
            None => return Err(bad_name(name)),
        };
        open_cuda(ordinal).map(Self::Candle)
    }

    /// The device tensors live on.
    pub fn device(&self) -> Device {
        match self {
            Self::FusedCpu => Device::Cpu,
            Self::Candle(device) => device.clone(),
        }
    }

    /// True for the fused CPU kernels.
    pub fn is_fused_cpu(&self) -> bool {
        matches!(self, Self::FusedCpu)
    }

    /// A short name for logs and reports: `cpu`, `cuda:N`, or `cpu (candle ops)`.
    pub fn name(&self) -> String {
        match self {
            Self::FusedCpu => "cpu".into(),
            Self::Candle(Device::Cpu) => "cpu (candle ops)".into(),
            Self::Candle(device) => match device.location() {
                DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
                other => format!("{other:?}"),
            },
        }
    }
}

fn bad_name(name: &str) -> crate::error::NnError {
    invalid(format!(
        "unknown device '{name}': use \"cpu\" or \"cuda:N\" (N = the GPU's index, from 0)"
    ))
}

#[cfg(feature = "cuda")]
fn open_cuda(ordinal: usize) -> Result<Device> {
    Device::new_cuda(ordinal).map_err(|e| {
        let detail = e.to_string().lines().next().unwrap_or_default().to_string();
        invalid(format!(
            "cannot open CUDA device {ordinal} ({detail}); check `nvidia-smi`, or train on \
             device \"cpu\""
        ))
    })
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(ordinal: usize) -> Result<Device> {
    Err(invalid(format!(
        "device 'cuda:{ordinal}' needs a recpipe built with the `cuda` feature \
         (scripts/cuda-build.sh); this binary trains on the CPU only"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_bad_ones_are_refused() {
        assert!(Compute::parse("cpu").unwrap().is_fused_cpu());
        assert_eq!(Compute::parse(" cpu ").unwrap().name(), "cpu");
        for bad in ["gpu", "cuda0", "cuda:x", "cuda:-1", ""] {
            let e = Compute::parse(bad).unwrap_err().to_string();
            assert!(e.contains("unknown device"), "{bad}: {e}");
        }
        // This test binary is built without the `cuda` feature (the default build).
        #[cfg(not(feature = "cuda"))]
        {
            let e = Compute::parse("cuda:1").unwrap_err().to_string();
            assert!(e.contains("`cuda` feature") && e.contains("cuda:1"), "{e}");
        }
        assert_eq!(Compute::Candle(Device::Cpu).name(), "cpu (candle ops)");
    }
}

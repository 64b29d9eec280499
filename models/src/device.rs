//! Which device a run's tensors live on, chosen once at the top (a recipe's `train.device`, a
//! command's `--device`) and passed down: the model code itself never picks one.
//!
//! - `cpu`: Burn's `flex` backend, with Anvil's fused kernels ([`crate::fused`]).
//! - `wgpu`: Burn's cubecl backend on wgpu — Vulkan, Metal or DX12 (cargo feature `wgpu`). The
//!   model runs Burn's own ops there (the fused CPU kernels are `flex`-only).
//! - `cuda`: Burn's CUDA backend (cargo feature `cuda`). Burn 0.22 downloads an LLVM bundle while
//!   building it (`scripts/build_cuda.sh` checks for it first); its path is `wgpu`'s but for the
//!   device.
//!
//! Never `Device::default()`: with a GPU feature compiled in, Burn's default becomes that GPU.

use burn::tensor::Device;
use std::fmt;
use std::str::FromStr;

/// The devices Anvil runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    #[default]
    Cpu,
    Wgpu,
    Cuda,
}

impl DeviceKind {
    pub const ALL: [DeviceKind; 3] = [DeviceKind::Cpu, DeviceKind::Wgpu, DeviceKind::Cuda];

    pub fn name(self) -> &'static str {
        match self {
            DeviceKind::Cpu => "cpu",
            DeviceKind::Wgpu => "wgpu",
            DeviceKind::Cuda => "cuda",
        }
    }
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DeviceKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        DeviceKind::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| format!("unknown device `{s}` (known: cpu, wgpu, cuda)"))
    }
}

/// A device this binary cannot run on, and what it would take.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct DeviceError(String);

/// The CPU device.
pub fn cpu() -> Device {
    Device::flex()
}

/// The device of `kind`: an error naming the cargo feature (or driver) it needs when this binary
/// cannot provide it.
pub fn select(kind: DeviceKind) -> Result<Device, DeviceError> {
    match kind {
        DeviceKind::Cpu => Ok(cpu()),
        DeviceKind::Wgpu => wgpu(),
        DeviceKind::Cuda => cuda(),
    }
}

#[cfg(feature = "wgpu")]
fn wgpu() -> Result<Device, DeviceError> {
    Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice))
}

#[cfg(not(feature = "wgpu"))]
fn wgpu() -> Result<Device, DeviceError> {
    Err(DeviceError(
        "device `wgpu`: this binary was built without the `wgpu` feature; build it with \
         `cargo build --release --features wgpu` (and a Vulkan, Metal or DX12 driver: on Debian \
         `apt install mesa-vulkan-drivers` gives a software Vulkan device)"
            .into(),
    ))
}

#[cfg(feature = "cuda")]
fn cuda() -> Result<Device, DeviceError> {
    Ok(Device::cuda(0))
}

#[cfg(not(feature = "cuda"))]
fn cuda() -> Result<Device, DeviceError> {
    Err(DeviceError(
        "device `cuda`: this binary was built without the `cuda` feature; build it with \
         `scripts/build_cuda.sh` (`cargo build --release --features cuda` once Burn 0.22's CUDA \
         backend can fetch its LLVM bundle, which the script checks first), and run it with an \
         NVIDIA driver"
            .into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_missing_backends_say_what_they_need() {
        for k in DeviceKind::ALL {
            assert_eq!(k.name().parse::<DeviceKind>(), Ok(k));
        }
        assert!(
            "tpu"
                .parse::<DeviceKind>()
                .unwrap_err()
                .contains("known: cpu, wgpu, cuda")
        );
        assert_eq!(select(DeviceKind::Cpu).unwrap(), cpu());
        #[cfg(not(feature = "wgpu"))]
        assert!(
            select(DeviceKind::Wgpu)
                .unwrap_err()
                .0
                .contains("--features wgpu")
        );
        #[cfg(not(feature = "cuda"))]
        assert!(
            select(DeviceKind::Cuda)
                .unwrap_err()
                .0
                .contains("--features cuda")
        );
    }
}

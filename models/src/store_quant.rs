//! Anvil's quantized checkpoint: the folder layout of [`crate::store`] (`model.json`,
//! `model.bpk`) plus `quant.json`. `model.bpk` stays a burnpack that Burn itself decodes, but its
//! matrices are Burn block-quantized tensors holding llama.cpp's Q8_0 / Q4_0 blocks exactly
//! (the same values and f16 scales a GGUF export of the same `--quant` holds), so both exports
//! of a model compute the same weights and the file is as small as the GGUF.
//!
//! Burn's own quantizer is not used: it rounds differently from llama.cpp, and on `flex` it keeps
//! 4-bit values one per byte, so a 4-bit checkpoint saved through it is as large as an 8-bit
//! one. Here the tensors are built directly: Q8_0 as `Q8S` with one f16 scale per block of 32,
//! Q4_0 as `Q4F` (range -8..=7, the nibble minus 8) packed eight to a `u32`, whose scale is
//! llama.cpp's `d = max / -8` and so may be negative, which Burn's dequantization (`scale · q`)
//! takes as it is.

use crate::hf;
use crate::llama::Llama;
use crate::quant::{self, GgmlType, QK, Quant, Role};
use crate::store::{StoreError, WEIGHTS_FILE};
use burn::tensor::quantization::{QuantScheme, QuantStore, QuantValue, ScaleDtype};
use burn::tensor::{Bytes, DType};
use half::f16;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

pub const QUANT_FILE: &str = "quant.json";

/// `quant.json`: what `--quant` was and the format each parameter got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuantInfo {
    /// `q8_0` or `q4_0`.
    pub format: String,
    pub block_size: usize,
    /// Burn parameter path → `Q8_0`, `Q4_0` or `F32`.
    pub tensors: BTreeMap<String, String>,
}

fn invalid(path: &Path, msg: impl std::fmt::Display) -> StoreError {
    StoreError::Invalid {
        path: path.to_path_buf(),
        msg: msg.to_string(),
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |err| StoreError::Io {
        path: path.to_path_buf(),
        err,
    }
}

/// `dir/quant.json`, or `None` for an unquantized folder.
pub fn read_info(dir: &Path) -> Result<Option<QuantInfo>, StoreError> {
    let p = dir.join(QUANT_FILE);
    if !p.exists() {
        return Ok(None);
    }
    let bytes = std::fs::read(&p).map_err(io(&p))?;
    let info: QuantInfo = serde_json::from_slice(&bytes).map_err(|e| invalid(&p, e))?;
    match info.format.parse::<Quant>() {
        Ok(Quant::Q8_0 | Quant::Q4_0) if info.block_size == QK => Ok(Some(info)),
        _ => Err(invalid(
            &p,
            format!(
                "`format` {} with block_size {} is not q8_0 or q4_0 in blocks of {QK}",
                info.format, info.block_size
            ),
        )),
    }
}

/// The parameter's role, from its Burn path.
fn role(path: &str, dims: usize, tied: bool) -> Role {
    if dims == 1 {
        Role::Vector
    } else if path.ends_with(".moe.gate.weight") {
        Role::Router
    } else if path.starts_with("lm_head.") || (tied && path.contains("embed_tokens")) {
        Role::Output
    } else {
        Role::Matrix
    }
}

/// llama.cpp's blocks of the `[r, c]` matrix `data`, taken along `axis`: along the inputs, as
/// llama.cpp does, which for Burn's `[in, out]` linear weights is axis 0. Returns the values in
/// `data`'s order and the scales in row-major order over the grid of blocks (Burn's order).
fn blocks(data: &[f32], r: usize, c: usize, axis: usize, ty: GgmlType) -> (Vec<i8>, Vec<f16>) {
    let mut values = vec![0i8; data.len()];
    let mut scales = Vec::with_capacity(data.len() / QK);
    let mut x = [0f32; QK];
    let block = |x: &[f32]| match ty {
        GgmlType::Q8_0 => {
            let b = quant::q8_0_block(x);
            (b.d, b.q)
        }
        GgmlType::Q4_0 => {
            let b = quant::q4_0_block(x);
            (b.d, b.q)
        }
        _ => unreachable!("only block formats are laid out here"),
    };
    if axis == 1 {
        for (i, chunk) in data.chunks_exact(QK).enumerate() {
            let (d, q) = block(chunk);
            scales.push(d);
            values[i * QK..(i + 1) * QK].copy_from_slice(&q);
        }
    } else {
        for bi in 0..r / QK {
            for col in 0..c {
                for (k, v) in x.iter_mut().enumerate() {
                    *v = data[(bi * QK + k) * c + col];
                }
                let (d, q) = block(&x);
                scales.push(d);
                for (k, v) in q.into_iter().enumerate() {
                    values[(bi * QK + k) * c + col] = v;
                }
            }
        }
    }
    (values, scales)
}

/// One parameter as a burnpack tensor: block-quantized when `ty` is a block format, f32
/// otherwise.
fn pack_tensor(
    path: String,
    shape: Vec<usize>,
    data: &[f32],
    axis: usize,
    ty: GgmlType,
) -> burn_pack::Tensor {
    if !matches!(ty, GgmlType::Q8_0 | GgmlType::Q4_0) {
        let bytes = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        return burn_pack::Tensor::new(path, DType::F32, shape, None, Bytes::from_bytes_vec(bytes));
    }
    let (r, c) = (shape[0], shape[1]);
    let (values, scales) = blocks(data, r, c, axis, ty);
    let block: &[u8] = if axis == 0 {
        &[QK as u8, 1]
    } else {
        &[QK as u8]
    };
    let (value, store) = match ty {
        GgmlType::Q8_0 => (QuantValue::Q8S, QuantStore::Native),
        _ => (QuantValue::Q4F, QuantStore::PackedU32(0)),
    };
    let scheme = QuantScheme::default()
        .with_value(value)
        .with_store(store)
        .per_block(block, ScaleDtype::F16);
    // Burn's quantized layout: the values, then (4-byte aligned, which whole blocks always are)
    // the block scales, in native byte order.
    let mut bytes: Vec<u8> = match ty {
        GgmlType::Q8_0 => values.iter().map(|&v| v as u8).collect(),
        // Eight 4-bit values per u32, the first in the lowest bits.
        _ => values
            .chunks_exact(8)
            .flat_map(|vs| {
                let word = vs.iter().enumerate().fold(0u32, |w, (i, &v)| {
                    w | (((v as u8) & 0x0F) as u32) << (4 * i)
                });
                word.to_ne_bytes()
            })
            .collect(),
    };
    bytes.extend(scales.iter().flat_map(|d| d.to_ne_bytes()));
    burn_pack::Tensor::new(
        path,
        DType::QFloat(scheme),
        shape,
        None,
        Bytes::from_bytes_vec(bytes),
    )
}

/// Writes `model` quantized as `quant` (Q8_0 or Q4_0) into the existing folder `dir`:
/// `model.json`, `model.bpk` and `quant.json`. Vectors and routers stay f32, like the GGUF
/// export; so does a matrix whose blocks would not be whole (which the GGUF keeps as F16).
pub fn save(model: &Llama, quant: Quant, dir: &Path) -> Result<QuantInfo, StoreError> {
    if !matches!(quant, Quant::Q8_0 | Quant::Q4_0) {
        return Err(invalid(
            dir,
            format!("an Anvil checkpoint quantizes to q8_0 or q4_0, not {quant}"),
        ));
    }
    if crate::lora::has_adapters(model) {
        return Err(invalid(dir, hf::ADAPTERS_ATTACHED));
    }
    let model = &*crate::lora::f32_base(model);
    let tied = model.config.tie_embeddings;
    let mut tensors = Vec::new();
    let mut formats = BTreeMap::new();
    for (path, shape, data) in hf::parameters(model) {
        // Linear weights are `[in, out]`: llama.cpp's blocks run along the inputs, axis 0.
        let (_, linear) = hf::hf_name(&path, false);
        let axis = if linear && shape.len() == 2 { 0 } else { 1 };
        let ty = match shape.len() {
            2 => match quant::choose(quant, role(&path, 2, tied), shape[axis]) {
                t @ (GgmlType::Q8_0 | GgmlType::Q4_0) => t,
                _ => GgmlType::F32,
            },
            _ => GgmlType::F32,
        };
        formats.insert(path.clone(), ty.name().to_string());
        tensors.push(pack_tensor(path, shape, &data, axis, ty));
    }
    crate::store::write_config(model, dir)?;
    let w = dir.join(WEIGHTS_FILE);
    burn_pack::Writer::new(tensors)
        .write_to_file(&w)
        .map_err(|e| invalid(&w, e))?;
    let info = QuantInfo {
        format: quant.name().into(),
        block_size: QK,
        tensors: formats,
    };
    let q = dir.join(QUANT_FILE);
    let json = serde_json::to_vec_pretty(&info).expect("quant info serializes");
    std::fs::write(&q, json).map_err(io(&q))?;
    Ok(info)
}

//! llama.cpp's block formats, bit for bit: Q8_0 and Q4_0 (32 values per block with one f16
//! scale) and plain F16/F32, with the rule that picks each tensor's format for an export. The
//! encoders follow ggml's `quantize_row_q8_0_ref` / `quantize_row_q4_0_ref`, the reference
//! implementations that llama.cpp's converters and `gguf-py` reproduce exactly, so a tensor
//! quantized here is byte-identical to one quantized there.

use half::f16;
use std::fmt;
use std::str::FromStr;

/// Values per Q8_0 / Q4_0 block.
pub const QK: usize = 32;

/// What `--quant` asks for: the format of the model's matrices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Quant {
    F16,
    Q8_0,
    Q4_0,
}

impl Quant {
    pub const ALL: [Quant; 3] = [Quant::F16, Quant::Q8_0, Quant::Q4_0];

    /// llama.cpp's `general.file_type` (`LlamaFileType.MOSTLY_*`).
    pub fn file_type(self) -> u32 {
        match self {
            Quant::F16 => 1,
            Quant::Q4_0 => 2,
            Quant::Q8_0 => 7,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Quant::F16 => "f16",
            Quant::Q8_0 => "q8_0",
            Quant::Q4_0 => "q4_0",
        }
    }
}

impl fmt::Display for Quant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Quant {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Quant::ALL
            .into_iter()
            .find(|q| q.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("unknown quantization `{s}` (expected f16, q8_0 or q4_0)"))
    }
}

/// A ggml tensor type this crate writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q8_0,
}

impl GgmlType {
    /// The `ggml_type` number stored in GGUF tensor infos.
    pub fn id(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q4_0 => 2,
            GgmlType::Q8_0 => 8,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "F32",
            GgmlType::F16 => "F16",
            GgmlType::Q4_0 => "Q4_0",
            GgmlType::Q8_0 => "Q8_0",
        }
    }

    /// Values per block (1 for the float types).
    pub fn block_size(self) -> usize {
        match self {
            GgmlType::F32 | GgmlType::F16 => 1,
            GgmlType::Q4_0 | GgmlType::Q8_0 => QK,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            GgmlType::F32 => 4,
            GgmlType::F16 => 2,
            GgmlType::Q4_0 => 2 + QK / 2,
            GgmlType::Q8_0 => 2 + QK,
        }
    }

    /// Bytes taken by `n` values (`n` a multiple of the block size).
    pub fn bytes_for(self, n: usize) -> usize {
        n / self.block_size() * self.block_bytes()
    }

    /// Encodes `x` (length a multiple of the block size) in this format.
    pub fn encode(self, x: &[f32]) -> Vec<u8> {
        match self {
            GgmlType::F32 => x.iter().flat_map(|v| v.to_le_bytes()).collect(),
            GgmlType::F16 => x
                .iter()
                .flat_map(|v| f16::from_f32(*v).to_le_bytes())
                .collect(),
            GgmlType::Q8_0 => quantize_q8_0(x),
            GgmlType::Q4_0 => quantize_q4_0(x),
        }
    }

    /// Decodes `bytes` (a whole number of blocks) back to f32.
    pub fn decode(self, bytes: &[u8]) -> Vec<f32> {
        match self {
            GgmlType::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            GgmlType::F16 => bytes
                .chunks_exact(2)
                .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            GgmlType::Q8_0 => dequantize_q8_0(bytes),
            GgmlType::Q4_0 => dequantize_q4_0(bytes),
        }
    }
}

/// What a tensor is, as far as choosing its format goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Norm weights and any other 1-D tensor: llama.cpp only reads these as F32.
    Vector,
    /// A mixture-of-experts router (`ffn_gate_inp`): kept F32 by llama.cpp's converters.
    Router,
    /// The LM head, or the token embedding when it is tied to the head.
    Output,
    /// Every other weight matrix (attention, feed-forward, experts, an untied embedding).
    Matrix,
}

/// The format of a tensor with rows of `row_len` values (ggml's `ne0`) under `quant`.
///
/// As llama.cpp: vectors and routers stay F32, and a row that is not a whole number of blocks
/// falls back to F16 (convert_hf_to_gguf does so for Q8_0). For Q4_0 the output matrix takes
/// Q8_0: `llama-quantize` gives it a higher-precision type than the rest (Q6_K, a K-quant this
/// crate does not write), since the logits are the most sensitive to its error.
pub fn choose(quant: Quant, role: Role, row_len: usize) -> GgmlType {
    let blockwise = |t: GgmlType| {
        if row_len.is_multiple_of(QK) {
            t
        } else {
            GgmlType::F16
        }
    };
    match (role, quant) {
        (Role::Vector | Role::Router, _) => GgmlType::F32,
        (_, Quant::F16) => GgmlType::F16,
        (_, Quant::Q8_0) | (Role::Output, Quant::Q4_0) => blockwise(GgmlType::Q8_0),
        (Role::Matrix, Quant::Q4_0) => blockwise(GgmlType::Q4_0),
    }
}

/// One Q8_0 block's scale and values.
pub struct BlockQ8 {
    pub d: f16,
    pub q: [i8; QK],
}

/// One Q4_0 block's scale and values, already shifted to `-8..=7` (the stored nibble minus 8).
pub struct BlockQ4 {
    pub d: f16,
    pub q: [i8; QK],
}

/// ggml's `quantize_row_q8_0_ref` for one block: `d = amax / 127`, `q = round(x / d)` with
/// `roundf` (half away from zero), the division done as a multiplication by the f32 `1/d` and
/// `d` only then rounded to f16.
pub fn q8_0_block(x: &[f32]) -> BlockQ8 {
    debug_assert_eq!(x.len(), QK);
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut q = [0i8; QK];
    for (o, v) in q.iter_mut().zip(x) {
        *o = (v * id).round() as i8;
    }
    BlockQ8 {
        d: f16::from_f32(d),
        q,
    }
}

/// ggml's `quantize_row_q4_0_ref` for one block: `d = max / -8` where `max` is the first value
/// of largest magnitude (with its sign), and the nibble is `min(15, (int8)(x/d + 8.5))`, the
/// cast truncating toward zero.
pub fn q4_0_block(x: &[f32]) -> BlockQ4 {
    debug_assert_eq!(x.len(), QK);
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    let d = max / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut q = [0i8; QK];
    for (o, v) in q.iter_mut().zip(x) {
        let nibble = ((v * id + 8.5) as i8).min(15);
        *o = nibble - 8;
    }
    BlockQ4 {
        d: f16::from_f32(d),
        q,
    }
}

/// `x` (length a multiple of 32) as Q8_0 blocks: f16 `d`, then 32 × i8.
pub fn quantize_q8_0(x: &[f32]) -> Vec<u8> {
    assert_eq!(x.len() % QK, 0, "Q8_0 needs whole blocks of {QK}");
    let mut out = Vec::with_capacity(x.len() / QK * (2 + QK));
    for chunk in x.chunks_exact(QK) {
        let b = q8_0_block(chunk);
        out.extend_from_slice(&b.d.to_le_bytes());
        out.extend(b.q.iter().map(|&q| q as u8));
    }
    out
}

/// `x` (length a multiple of 32) as Q4_0 blocks: f16 `d`, then 16 bytes where byte `j` holds
/// value `j` in its low nibble and value `j + 16` in its high nibble.
pub fn quantize_q4_0(x: &[f32]) -> Vec<u8> {
    assert_eq!(x.len() % QK, 0, "Q4_0 needs whole blocks of {QK}");
    let mut out = Vec::with_capacity(x.len() / QK * (2 + QK / 2));
    for chunk in x.chunks_exact(QK) {
        let b = q4_0_block(chunk);
        out.extend_from_slice(&b.d.to_le_bytes());
        for j in 0..QK / 2 {
            let lo = (b.q[j] + 8) as u8;
            let hi = (b.q[j + QK / 2] + 8) as u8;
            out.push(lo | (hi << 4));
        }
    }
    out
}

pub fn dequantize_q8_0(bytes: &[u8]) -> Vec<f32> {
    let mut out = Vec::with_capacity(bytes.len() / (2 + QK) * QK);
    for b in bytes.chunks_exact(2 + QK) {
        let d = f16::from_le_bytes([b[0], b[1]]).to_f32();
        out.extend(b[2..].iter().map(|&q| q as i8 as f32 * d));
    }
    out
}

pub fn dequantize_q4_0(bytes: &[u8]) -> Vec<f32> {
    let mut out = Vec::with_capacity(bytes.len() / (2 + QK / 2) * QK);
    for b in bytes.chunks_exact(2 + QK / 2) {
        let d = f16::from_le_bytes([b[0], b[1]]).to_f32();
        let qs = &b[2..];
        out.extend(qs.iter().map(|&q| ((q & 0x0F) as i32 - 8) as f32 * d));
        out.extend(qs.iter().map(|&q| ((q >> 4) as i32 - 8) as f32 * d));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random(n: usize, seed: u64, scale: f32) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|_| (rng.random::<f32>() * 2.0 - 1.0) * scale)
            .collect()
    }

    #[test]
    fn q8_0_hand_computed_block() {
        // amax = 127 makes d exactly 1: every value rounds to itself, halves away from zero.
        let mut x = [0f32; QK];
        x[0] = 127.0;
        x[1] = -127.0;
        x[2] = 2.5;
        x[3] = -2.5;
        x[4] = 0.49;
        let bytes = quantize_q8_0(&x);
        assert_eq!(bytes.len(), 34);
        assert_eq!(&bytes[..2], &f16::from_f32(1.0).to_le_bytes());
        let q: Vec<i8> = bytes[2..].iter().map(|&b| b as i8).collect();
        assert_eq!(&q[..6], &[127, -127, 3, -3, 0, 0]);
        assert_eq!(dequantize_q8_0(&bytes)[..4], [127.0, -127.0, 3.0, -3.0]);
    }

    #[test]
    fn q4_0_hand_computed_block() {
        // max = -8 (largest magnitude, negative) gives d = 1: q = trunc(x + 8.5) clamped to 15.
        let mut x = [0f32; QK];
        x[0] = -8.0; // nibble 0
        x[1] = 7.0; // 15
        x[2] = 1.5; // trunc(10.0) = 10
        x[16] = -0.5; // trunc(8.0) = 8, in the high nibble of byte 0
        x[17] = 3.2; // trunc(11.7) = 11
        let bytes = quantize_q4_0(&x);
        assert_eq!(bytes.len(), 18);
        assert_eq!(&bytes[..2], &f16::from_f32(1.0).to_le_bytes());
        assert_eq!(bytes[2], 8 << 4);
        assert_eq!(bytes[3], 15 | (11 << 4));
        assert_eq!(bytes[4], 10 | (8 << 4));
        let back = dequantize_q4_0(&bytes);
        assert_eq!(
            [back[0], back[1], back[2], back[16], back[17]],
            [-8.0, 7.0, 2.0, 0.0, 3.0]
        );

        // A positive extreme makes d negative: the extreme maps to nibble 0, `-max` clamps to 15.
        let mut y = [0f32; QK];
        y[5] = 4.0;
        y[6] = -4.0;
        let bytes = quantize_q4_0(&y);
        assert_eq!(f16::from_le_bytes([bytes[0], bytes[1]]).to_f32(), -0.5);
        assert_eq!(bytes[2 + 5] & 0x0F, 0);
        assert_eq!(bytes[2 + 6] & 0x0F, 15);
        let back = dequantize_q4_0(&bytes);
        assert_eq!((back[5], back[6], back[0]), (4.0, -3.5, 0.0));
    }

    #[test]
    fn all_zero_blocks_stay_zero() {
        let x = [0f32; 2 * QK];
        for t in [GgmlType::Q8_0, GgmlType::Q4_0] {
            let b = t.encode(&x);
            assert_eq!(b.len(), t.bytes_for(x.len()));
            assert!(t.decode(&b).iter().all(|v| *v == 0.0));
        }
    }

    #[test]
    fn round_trip_errors_within_half_a_step_for_q8_and_a_step_for_q4() {
        for (seed, scale) in [(1, 1.0), (2, 0.02), (3, 300.0)] {
            let x = random(64 * QK, seed, scale);
            for t in [GgmlType::Q8_0, GgmlType::Q4_0] {
                let bytes = t.encode(&x);
                let back = t.decode(&bytes);
                assert_eq!(back.len(), x.len());
                for (i, (block, deq)) in x.chunks(QK).zip(back.chunks(QK)).enumerate() {
                    let off = i * t.block_bytes();
                    let d = f16::from_le_bytes([bytes[off], bytes[off + 1]])
                        .to_f32()
                        .abs();
                    // Q8_0 rounds to the nearest step (half a step of error, plus the f16
                    // rounding of d over up to 127 steps); Q4_0's grid is one-sided at the
                    // clamp, so a whole step.
                    let bound = match t {
                        GgmlType::Q8_0 => d / 2.0 + 127.0 * d * 2f32.powi(-11),
                        _ => d + 8.0 * d * 2f32.powi(-11),
                    };
                    for (a, b) in block.iter().zip(deq) {
                        assert!((a - b).abs() <= bound * 1.0001, "{t:?} {a} -> {b}, d = {d}");
                    }
                }
            }
        }
    }

    #[test]
    fn float_types_round_trip() {
        let x = random(100, 4, 10.0);
        assert_eq!(GgmlType::F32.decode(&GgmlType::F32.encode(&x)), x);
        let h = GgmlType::F16.decode(&GgmlType::F16.encode(&x));
        for (a, b) in x.iter().zip(&h) {
            assert!((a - b).abs() <= a.abs() * 2f32.powi(-11));
        }
    }

    #[test]
    fn format_choice_follows_llama_cpp() {
        use GgmlType::*;
        assert_eq!(choose(Quant::Q4_0, Role::Vector, 256), F32);
        assert_eq!(choose(Quant::Q8_0, Role::Router, 256), F32);
        assert_eq!(choose(Quant::F16, Role::Output, 256), F16);
        assert_eq!(choose(Quant::Q8_0, Role::Output, 256), Q8_0);
        assert_eq!(choose(Quant::Q4_0, Role::Output, 256), Q8_0);
        assert_eq!(choose(Quant::Q4_0, Role::Matrix, 256), Q4_0);
        assert_eq!(choose(Quant::Q4_0, Role::Matrix, 100), F16);
        assert_eq!("Q8_0".parse::<Quant>(), Ok(Quant::Q8_0));
        assert!("q5_k".parse::<Quant>().is_err());
    }
}

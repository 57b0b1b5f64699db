//! A safetensors file checked tensor by tensor before the `safetensors` crate reads it, so that every
//! problem names its tensor and none slips through: a duplicate name (JSON keeps the last, silently),
//! an unknown dtype, a shape whose size does not match its byte range, a range outside the data,
//! overlapping ranges or bytes no tensor covers, a header longer than the file.

use std::collections::HashSet;
use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::limits::MAX_HEADER_BYTES;

/// The header's entries in file order, duplicates kept (so that they can be reported).
struct Entries(Vec<(String, serde_json::Value)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object of tensors")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Entries, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = map.next_entry::<String, serde_json::Value>()? {
                    out.push(entry);
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TensorInfo {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: [u64; 2],
}

/// Bytes per value of a safetensors dtype name.
fn dtype_size(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" => 1,
        "I16" | "U16" | "F16" | "BF16" => 2,
        "I32" | "U32" | "F32" => 4,
        "I64" | "U64" | "F64" => 8,
        _ => return None,
    })
}

/// Check the layout of the safetensors `bytes` (named `file` in messages).
pub fn check(file: &str, bytes: &[u8]) -> Result<()> {
    let bad = |reason: String| Error::Safetensors {
        file: file.into(),
        reason,
    };
    let Some(len_bytes) = bytes.get(..8) else {
        return Err(bad(format!(
            "{} bytes, shorter than the 8-byte header length",
            bytes.len()
        )));
    };
    let n = u64::from_le_bytes(len_bytes.try_into().expect("8 bytes"));
    let rest = bytes.len() as u64 - 8;
    if n > rest {
        return Err(bad(format!(
            "the header says it is {n} bytes long, but only {rest} bytes follow (a truncated file?)"
        )));
    }
    if n > MAX_HEADER_BYTES {
        return Err(bad(format!(
            "a header of {n} bytes is over the limit of {MAX_HEADER_BYTES}"
        )));
    }
    let header = &bytes[8..8 + n as usize];
    let data_len = rest - n;
    let Entries(entries) = serde_json::from_slice(header)
        .map_err(|e| bad(format!("the header is not a JSON object of tensors: {e}")))?;
    let mut seen = HashSet::new();
    let mut ranges = Vec::with_capacity(entries.len());
    for (name, value) in entries {
        if !seen.insert(name.clone()) {
            return Err(bad(format!("tensor `{name}` appears twice in the header")));
        }
        if name == "__metadata__" {
            continue;
        }
        let info: TensorInfo =
            serde_json::from_value(value).map_err(|e| bad(format!("tensor `{name}`: {e}")))?;
        let size = dtype_size(&info.dtype).ok_or_else(|| {
            bad(format!(
                "tensor `{name}` has the unknown dtype {}",
                info.dtype
            ))
        })?;
        let values = info.shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d));
        let want = values.and_then(|v| v.checked_mul(size));
        let [begin, end] = info.data_offsets;
        if begin > end || end > data_len {
            let hint = if begin <= end {
                " (a truncated file?)"
            } else {
                ""
            };
            return Err(bad(format!(
                "tensor `{name}` has the byte range {begin}..{end}, outside the {data_len} bytes of data{hint}"
            )));
        }
        if want != Some(end - begin) {
            return Err(bad(format!(
                "tensor `{name}` of shape {:?} and dtype {} needs {} bytes, but its range {begin}..{end} holds {}",
                info.shape,
                info.dtype,
                want.map_or("more than 2^64".to_string(), |w| w.to_string()),
                end - begin
            )));
        }
        ranges.push((begin, end, name));
    }
    // The ranges must tile the data exactly: no overlap, no gap.
    ranges.sort();
    let mut at = 0;
    for (begin, end, name) in &ranges {
        if *begin < at {
            return Err(bad(format!(
                "tensor `{name}` (bytes {begin}..{end}) overlaps the tensor before it, which ends at byte {at}"
            )));
        }
        if *begin > at {
            return Err(bad(format!(
                "bytes {at}..{begin} of the data belong to no tensor (the next is `{name}`)"
            )));
        }
        at = *end;
    }
    if at != data_len {
        return Err(bad(format!(
            "the tensors cover {at} of the {data_len} bytes of data"
        )));
    }
    Ok(())
}

//! Storage buffers of f32, u32 or f16 values, uploads and the one readback path.

use wgpu::util::DeviceExt;

use super::kernel::Elem;
use super::GpuContext;
use crate::error::{Error, Result};

/// A storage buffer of `len` values: f32 or u32 words, or f16 halves (`elem`).
#[derive(Clone, Debug)]
pub struct GpuTensor {
    pub buffer: wgpu::Buffer,
    pub len: usize,
    /// `F16` for half storage; `F32` for 4-byte words (u32 buffers are not told apart).
    pub elem: Elem,
}

/// Bytes of `len` values of `elem`, padded to whole 8-byte units (one `vec4<f16>`), at least one,
/// so that every binding is legal and a vec4 view of an f16 buffer never runs past its end.
fn padded_bytes(len: usize, elem: Elem) -> u64 {
    let bytes = len.max(1) * elem.size();
    match elem {
        Elem::F16 => bytes.div_ceil(8) as u64 * 8,
        _ => bytes as u64,
    }
}

impl GpuTensor {
    /// An uninitialised (zeroed) storage buffer of `len` values; at least one value so bindings are legal.
    pub fn zeros(gpu: &GpuContext, label: &str, len: usize) -> Self {
        Self::zeros_of(gpu, label, len, Elem::F32)
    }

    /// [`GpuTensor::zeros`] of `elem` values.
    pub fn zeros_of(gpu: &GpuContext, label: &str, len: usize, elem: Elem) -> Self {
        let buffer = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: padded_bytes(len, elem),
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        GpuTensor { buffer, len, elem }
    }

    /// `data` stored as `elem`: f32 as is, or rounded to the nearest f16.
    pub fn from_f32(gpu: &GpuContext, label: &str, data: &[f32], elem: Elem) -> Self {
        match elem {
            Elem::F16 => {
                let mut halves: Vec<u16> = data
                    .iter()
                    .map(|&v| half::f16::from_f32(v).to_bits())
                    .collect();
                halves.resize((padded_bytes(data.len(), elem) / 2) as usize, 0);
                GpuTensor {
                    len: data.len(),
                    elem,
                    ..Self::from_slice(gpu, label, &halves)
                }
            }
            _ => Self::from_slice(gpu, label, data),
        }
    }

    /// A storage buffer holding `data`.
    pub fn from_slice<T: bytemuck::Pod>(gpu: &GpuContext, label: &str, data: &[T]) -> Self {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        let padded;
        let contents = if bytes.is_empty() {
            padded = [0u8; 4];
            &padded[..]
        } else {
            bytes
        };
        let buffer = gpu
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
            });
        GpuTensor {
            buffer,
            len: bytes.len() / 4,
            elem: Elem::F32,
        }
    }

    /// Bytes of the buffer (f16 buffers are padded to whole 8-byte units).
    pub fn bytes(&self) -> u64 {
        padded_bytes(self.len, self.elem)
    }

    /// Read the whole buffer back (tests and debugging; a forward pass reads only its logits).
    pub async fn read<T: bytemuck::Pod>(&self, gpu: &GpuContext) -> Result<Vec<T>> {
        let staging = staging_buffer(gpu, self.bytes());
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(&self.buffer, 0, &staging, 0, self.bytes());
        gpu.queue.submit([enc.finish()]);
        read_buffer(gpu, &staging, self.bytes()).await
    }

    /// Read the values back as f32, whatever the storage (f16 is widened exactly).
    pub async fn read_f32(&self, gpu: &GpuContext) -> Result<Vec<f32>> {
        let words: Vec<u32> = self.read(gpu).await?;
        Ok(words_to_f32(&words, self.elem, self.len))
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_f32_blocking(&self, gpu: &GpuContext) -> Result<Vec<f32>> {
        pollster::block_on(self.read_f32(gpu))
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_blocking<T: bytemuck::Pod>(&self, gpu: &GpuContext) -> Result<Vec<T>> {
        pollster::block_on(self.read(gpu))
    }
}

/// The first `len` values of `elem` held in `words`, as f32.
pub fn words_to_f32(words: &[u32], elem: Elem, len: usize) -> Vec<f32> {
    match elem {
        Elem::F16 => words
            .iter()
            .flat_map(|w| [w & 0xffff, w >> 16])
            .take(len)
            .map(|h| half::f16::from_bits(h as u16).to_f32())
            .collect(),
        _ => words.iter().take(len).map(|&w| f32::from_bits(w)).collect(),
    }
}

/// A mappable buffer to copy results into.
pub fn staging_buffer(gpu: &GpuContext, bytes: u64) -> wgpu::Buffer {
    gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("readback"),
        size: bytes.max(4),
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

/// Map `staging` (already the target of a submitted copy) and return its first `bytes` bytes as values.
/// Native waits on the device; the browser resolves the map on its own event loop.
pub async fn read_buffer<T: bytemuck::Pod>(
    gpu: &GpuContext,
    staging: &wgpu::Buffer,
    bytes: u64,
) -> Result<Vec<T>> {
    let bytes = bytes.max(4);
    let (tx, rx) = futures_channel::oneshot::channel();
    staging.map_async(wgpu::MapMode::Read, 0..bytes, move |r| {
        let _ = tx.send(r);
    });
    #[cfg(not(target_arch = "wasm32"))]
    gpu.device
        .poll(wgpu::PollType::wait_indefinitely())
        .map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))?;
    let mapped = rx
        .await
        .map_err(|_| Error::Gpu("readback was cancelled".into()))?;
    // Read and unmap before reporting any earlier error, so that the buffer is ready for the
    // next run whatever happened.
    let out = match mapped {
        Ok(()) => {
            let out = staging
                .get_mapped_range(0..bytes)
                .map(|view| bytemuck::pod_collect_to_vec(&view[..]))
                .map_err(|e| Error::Gpu(format!("reading the mapped buffer: {e:?}")));
            staging.unmap();
            out
        }
        Err(e) => Err(Error::Gpu(format!("mapping the readback buffer: {e}"))),
    };
    gpu.check()?;
    out
}

//! Storage buffers of f32 values, uploads and the one readback path.

use wgpu::util::DeviceExt;

use super::GpuContext;
use crate::error::{Error, Result};

/// A storage buffer of `len` f32 (or u32) values.
#[derive(Clone, Debug)]
pub struct GpuTensor {
    pub buffer: wgpu::Buffer,
    pub len: usize,
}

impl GpuTensor {
    /// An uninitialised (zeroed) storage buffer of `len` values; at least one value so bindings are legal.
    pub fn zeros(gpu: &GpuContext, label: &str, len: usize) -> Self {
        let buffer = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: (len.max(1) * 4) as u64,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        GpuTensor { buffer, len }
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
        }
    }

    pub fn bytes(&self) -> u64 {
        (self.len * 4) as u64
    }

    /// Read the whole buffer back (tests and debugging; a forward pass reads only its logits).
    pub async fn read<T: bytemuck::Pod>(&self, gpu: &GpuContext) -> Result<Vec<T>> {
        let staging = staging_buffer(gpu, self.bytes());
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(&self.buffer, 0, &staging, 0, self.bytes());
        gpu.queue.submit([enc.finish()]);
        read_buffer(gpu, &staging, self.bytes()).await
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_blocking<T: bytemuck::Pod>(&self, gpu: &GpuContext) -> Result<Vec<T>> {
        pollster::block_on(self.read(gpu))
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
    gpu.check()?;
    mapped.map_err(|e| Error::Gpu(format!("mapping the readback buffer: {e}")))?;
    let out = {
        let view = staging
            .get_mapped_range(0..bytes)
            .map_err(|e| Error::Gpu(format!("reading the mapped buffer: {e:?}")))?;
        bytemuck::pod_collect_to_vec(&view[..])
    };
    staging.unmap();
    Ok(out)
}

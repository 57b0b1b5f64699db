//! How a kernel is declared: its parameter block (one Rust struct, from which the WGSL struct is
//! generated), its buffer slots (checked when a step binds buffers, and against naga's reflection of
//! the WGSL in the tests), the phase its steps count toward, and the WGSL family it lives in.

use std::marker::PhantomData;

use super::program::Phase;

/// A uniform parameter block. Declare one with [`wgsl_params!`]: the Rust struct and the WGSL
/// struct come from the same field list, so they cannot drift apart.
pub trait Params: bytemuck::Pod + Sync {
    /// The struct's name, the same in Rust and WGSL.
    const NAME: &'static str;
    /// `(field, type)` in order; every field is a 4-byte `u32`, `i32` or `f32`.
    const FIELDS: &'static [(&'static str, &'static str)];

    /// The struct as a [`Family`] lists it.
    const DECL: ParamsDecl = ParamsDecl {
        name: Self::NAME,
        fields: Self::FIELDS,
    };
}

/// A parameter block's name and fields: what its WGSL declaration is made from.
#[derive(Clone, Copy, Debug)]
pub struct ParamsDecl {
    pub name: &'static str,
    pub fields: &'static [(&'static str, &'static str)],
}

impl ParamsDecl {
    /// The WGSL declaration, padded to a multiple of 16 bytes (the uploaded block is padded alike).
    pub fn wgsl(&self) -> String {
        let mut s = format!("struct {} {{\n", self.name);
        for (name, ty) in self.fields {
            s += &format!("    {name}: {ty},\n");
        }
        for i in self.fields.len()..padded_words(self.fields.len()) {
            s += &format!("    _pad{i}: u32,\n");
        }
        s + "}\n"
    }
}

/// Words of a parameter block of `fields` words once padded to 16 bytes.
pub const fn padded_words(fields: usize) -> usize {
    fields.div_ceil(4) * 4
}

/// Declares a parameter block: a `#[repr(C)]` Rust struct of 4-byte scalars and its WGSL twin.
#[macro_export]
macro_rules! wgsl_params {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* $field:ident: $ty:ident),* $(,)? }) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
        pub struct $name { $($(#[$fmeta])* pub $field: $ty),* }

        impl $crate::gpu::kernel::Params for $name {
            const NAME: &'static str = stringify!($name);
            const FIELDS: &'static [(&'static str, &'static str)] =
                &[$((stringify!($field), stringify!($ty))),*];
        }

        // Every field is 4 bytes, so the C layout and WGSL's uniform layout are the same.
        const _: () = assert!(
            std::mem::size_of::<$name>() == 4 * [$(stringify!($field)),*].len()
        );
    };
}

/// How a kernel uses a buffer slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    ReadWrite,
}

/// What a buffer slot or a tensor holds (`vec4<f32>` views count as `F32`). A slot is declared
/// `F32` or `U32`; an `F32` slot whose WGSL type is the alias `T_<slot>` also takes an `F16` tensor
/// (the library compiles that variant with the alias set to `f16`, see `Kernels::launch`).
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Elem {
    F32,
    U32,
    F16,
}

impl Elem {
    pub const fn name(self) -> &'static str {
        match self {
            Elem::F32 => "f32",
            Elem::U32 => "u32",
            Elem::F16 => "f16",
        }
    }

    /// Bytes per value.
    pub const fn size(self) -> usize {
        match self {
            Elem::F32 | Elem::U32 => 4,
            Elem::F16 => 2,
        }
    }
}

/// One storage-buffer slot of a kernel: binding `i` of group 0 is the `i`-th slot, and the
/// parameter block follows the last slot. Name, access and element type are checked against the
/// shader in the tests.
#[derive(Clone, Copy, Debug)]
pub struct Slot {
    /// The WGSL variable's name.
    pub name: &'static str,
    pub access: Access,
    pub elem: Elem,
}

/// An f32 slot the kernel reads.
pub const fn read(name: &'static str) -> Slot {
    Slot {
        name,
        access: Access::Read,
        elem: Elem::F32,
    }
}

/// An f32 slot the kernel writes (and may read): a step's outputs, which the debug run reads back.
pub const fn write(name: &'static str) -> Slot {
    Slot {
        name,
        access: Access::ReadWrite,
        elem: Elem::F32,
    }
}

/// A u32 slot the kernel reads (flags, indices, counts).
pub const fn read_u32(name: &'static str) -> Slot {
    Slot {
        elem: Elem::U32,
        ..read(name)
    }
}

/// A u32 slot the kernel writes.
pub const fn write_u32(name: &'static str) -> Slot {
    Slot {
        elem: Elem::U32,
        ..write(name)
    }
}

/// A WGSL file and the kernels (entry points) declared in it.
pub struct Family {
    pub name: &'static str,
    /// The file's text (entry points and helpers; no parameter structs, no shared constants).
    pub source: &'static str,
    /// Shared WGSL pieces the file uses, e.g. [`REDUCE`].
    pub libs: &'static [&'static str],
    /// The parameter blocks the file's kernels use (`P::DECL`).
    pub params: &'static [ParamsDecl],
    /// Every entry point of the file.
    pub kernels: &'static [&'static KernelInfo],
}

impl Family {
    /// The complete shader: the prelude, the parameter structs, the shared pieces, the file.
    pub fn wgsl(&self) -> String {
        self.wgsl_with(self.source)
    }

    /// The file with its reductions on subgroup operations and `WG` set to `width` invocations
    /// (at most the adapter's smallest subgroup, so the workgroup is one subgroup). Only for
    /// families whose workgroup reductions are all of [`REDUCE`] and whose `WG` is declared as
    /// `const WG: u32 = 32u;`; `None` otherwise.
    pub fn wgsl_subgroup(&self, width: u32) -> Option<String> {
        const WG32: &str = "const WG: u32 = 32u;";
        if !self.libs.contains(&REDUCE) || !self.source.contains(WG32) {
            return None;
        }
        // Browsers want the extension enabled; naga (native) takes subgroup operations as they
        // are and rejects the directive for now.
        let enable = if cfg!(target_arch = "wasm32") {
            "enable subgroups;\n"
        } else {
            ""
        };
        let body = self
            .source
            .replace(WG32, &format!("const WG: u32 = {width}u;"));
        Some(
            enable.to_string()
                + &self.assemble(
                    &body,
                    |lib| {
                        if lib == REDUCE {
                            REDUCE_SUBGROUP
                        } else {
                            lib
                        }
                    },
                ),
        )
    }

    /// Like [`Family::wgsl`] with another body: a generated variant of the file.
    pub fn wgsl_with(&self, body: &str) -> String {
        self.assemble(body, |lib| lib)
    }

    /// The prelude, the parameter structs, each shared piece as `lib` maps it, then `body`.
    fn assemble(&self, body: &str, lib: impl Fn(&'static str) -> &'static str) -> String {
        let mut s = prelude();
        for p in self.params {
            s += &p.wgsl();
        }
        for l in self.libs {
            s += lib(l);
        }
        s + body
    }
}

/// What every shader shares: sentinels and the token and head limits, defined once.
pub fn prelude() -> String {
    format!(
        "const MAX_TOKENS: u32 = {}u;\nconst MAX_HEADS: u32 = {}u;\n{}",
        super::kernels::MAX_TOKENS,
        super::kernels::MAX_HEADS,
        include_str!("../../shaders/prelude.wgsl")
    )
}

/// The ranking sort of one image's rows by `WG` invocations (the including file defines `WG`).
pub const SORT: &str = include_str!("../../shaders/sort.wgsl");

/// Workgroup reductions over `WG` invocations (the including file defines `WG`).
pub const REDUCE: &str = include_str!("../../shaders/reduce.wgsl");

/// The same reductions on subgroup operations, for a workgroup of one subgroup.
pub const REDUCE_SUBGROUP: &str = include_str!("../../shaders/reduce_subgroup.wgsl");

/// A kernel without its parameter type: what the library and the tests need to know of it.
pub struct KernelInfo {
    pub family: &'static Family,
    pub entry: &'static str,
    /// Storage buffers in binding order; the parameter block is at binding `slots.len()`.
    pub slots: &'static [Slot],
    pub params_name: &'static str,
    /// Bytes of the uploaded parameter block (padded to 16).
    pub params_bytes: usize,
    /// What the kernel's steps count toward in `bench`.
    pub phase: Phase,
}

/// A kernel: an entry point of a family, typed by its parameter block.
pub struct Kernel<P: Params> {
    pub info: KernelInfo,
    params: PhantomData<P>,
}

impl<P: Params> Kernel<P> {
    pub const fn new(
        family: &'static Family,
        entry: &'static str,
        slots: &'static [Slot],
        phase: Phase,
    ) -> Self {
        Kernel {
            info: KernelInfo {
                family,
                entry,
                slots,
                params_name: P::NAME,
                params_bytes: 4 * padded_words(P::FIELDS.len()),
                phase,
            },
            params: PhantomData,
        }
    }
}

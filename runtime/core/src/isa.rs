//! Which SIMD instruction family a kernel runs with, and whether this CPU has it.
//!
//! Every kernel has a plain-Rust reference ([`Isa::Scalar`]) and fast paths that must agree with
//! it; a kernel only ever runs a path the CPU supports.

/// A family of SIMD instructions a kernel can be built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// Plain Rust, the reference every other path is tested against.
    Scalar,
    /// x86_64 baseline (every x86_64 CPU has SSE2).
    Sse2,
    /// x86_64 with AVX2 and FMA, chosen at run time when the `std` feature can detect them.
    Avx2,
    /// x86_64 with AVX-512 VNNI and VL (`VPDPBUSD`: Ice Lake, Sapphire Rapids, Zen 4 and later),
    /// chosen at run time when the `std` feature can detect it.
    Avx512Vnni,
    /// aarch64 Advanced SIMD (every aarch64 CPU has it).
    Neon,
    /// aarch64 Advanced SIMD with the dot-product instructions (SDOT/UDOT: Cortex-A76 and later,
    /// Jetson Orin), chosen at run time when the `std` feature can detect them.
    NeonDot,
}

impl Isa {
    /// Every implementation, fastest last.
    pub const ALL: [Isa; 6] = [
        Isa::Scalar,
        Isa::Sse2,
        Isa::Avx2,
        Isa::Avx512Vnni,
        Isa::Neon,
        Isa::NeonDot,
    ];

    /// Short lowercase name, as used in logs and benchmarks.
    pub const fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Sse2 => "sse2",
            Isa::Avx2 => "avx2",
            Isa::Avx512Vnni => "avx512-vnni",
            Isa::Neon => "neon",
            Isa::NeonDot => "neon-dotprod",
        }
    }

    /// The first of `paths` (a kernel's fast paths, fastest first) this CPU runs, else the
    /// reference.
    pub fn fastest_of(paths: &[Isa]) -> Isa {
        paths
            .iter()
            .copied()
            .find(|isa| isa.is_supported())
            .unwrap_or(Isa::Scalar)
    }

    /// `self` when it is the reference or one of `paths` (a kernel's fast paths) and this CPU
    /// runs it: a kernel never claims a path it does not have.
    pub fn among(self, paths: &[Isa]) -> Option<Isa> {
        ((self == Isa::Scalar || paths.contains(&self)) && self.is_supported()).then_some(self)
    }

    /// Whether this CPU can run the implementation.
    pub fn is_supported(self) -> bool {
        match self {
            Isa::Scalar => true,
            Isa::Sse2 => cfg!(target_arch = "x86_64"),
            Isa::Avx2 => avx2_supported(),
            Isa::Avx512Vnni => vnni_supported(),
            Isa::Neon => cfg!(target_arch = "aarch64"),
            Isa::NeonDot => dotprod_supported(),
        }
    }
}

#[cfg(all(target_arch = "x86_64", feature = "std"))]
fn avx2_supported() -> bool {
    // Every AVX2 CPU of the last decade also has FMA; asking for both lets kernels fuse.
    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
}

#[cfg(all(target_arch = "x86_64", not(feature = "std")))]
fn avx2_supported() -> bool {
    // Without an OS to ask, only a build for an AVX2 target may use it.
    cfg!(all(target_feature = "avx2", target_feature = "fma"))
}

#[cfg(not(target_arch = "x86_64"))]
fn avx2_supported() -> bool {
    false
}

#[cfg(all(target_arch = "x86_64", feature = "std"))]
fn vnni_supported() -> bool {
    // The kernels use VPDPBUSD on 256-bit vectors (VL) and AVX2 around it, which AVX-512
    // implies.
    std::is_x86_feature_detected!("avx512vnni") && std::is_x86_feature_detected!("avx512vl")
}

#[cfg(all(target_arch = "x86_64", not(feature = "std")))]
fn vnni_supported() -> bool {
    cfg!(all(
        target_feature = "avx512vnni",
        target_feature = "avx512vl"
    ))
}

#[cfg(not(target_arch = "x86_64"))]
fn vnni_supported() -> bool {
    false
}

#[cfg(all(target_arch = "aarch64", feature = "std"))]
fn dotprod_supported() -> bool {
    std::arch::is_aarch64_feature_detected!("dotprod")
}

#[cfg(all(target_arch = "aarch64", not(feature = "std")))]
fn dotprod_supported() -> bool {
    cfg!(target_feature = "dotprod")
}

#[cfg(not(target_arch = "aarch64"))]
fn dotprod_supported() -> bool {
    false
}

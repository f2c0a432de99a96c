//! The NAP inference library: what turns a bundle and a frame into a verdict, on the device and
//! on the host alike.
//!
//! - [`bundle`]: the single-file model format, read and checked at load.
//! - [`preprocess`]: a frame (JPEG, PNG or raw RGB8) to the backbone's input tensor.
//! - [`backbone`]: the bundle's backbone graph, optimized for tract, depthwise and pointwise
//!   convolutions on `nap-core`'s kernels.
//! - [`integer`]: the int8 backbone as integer layers on `nap-core`'s kernels, u8 codes from
//!   the frame to the pre-pool tensor.
//! - [`neck`]: a head's layers before its last dense layer, run by tract on the pooled feature.
//! - [`detector`]: the backbone in tract, then `nap-core`'s reduction, head and scores.
//!
//! Feature `tract` (default) runs backbones in tract; without it the library runs int8 bundles'
//! integer programs only, for devices that need nothing else.
//!
//! The daemon that runs it on a camera is the `napd` crate; the host tool is `napctl`.
pub mod backbone;
pub mod bundle;
pub mod detector;
pub mod integer;
pub mod limits;
pub mod neck;
pub mod preprocess;

/// The text a panic was raised with (`panic!` with a literal or a formatted message), if any:
/// for errors made from panics caught in third-party code.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("no message")
}

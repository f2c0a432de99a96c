//! The `method` property: the bundle's deciding method, or one the user names.

use gstreamer::glib;
use nap_core::score::Method;

/// The methods `napdetect` can decide with, as a GLib enum so that `gst-inspect-1.0` lists them;
/// the nicks are nap-core's method names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, glib::Enum)]
#[enum_type(name = "GstNapDetectMethod")]
pub enum MethodChoice {
    /// The bundle's deciding method, with its calibrated threshold.
    #[default]
    #[enum_value(name = "The bundle's deciding method", nick = "bundle")]
    Bundle,
    #[enum_value(name = "Maximum softmax probability", nick = "MSP")]
    Msp,
    #[enum_value(name = "Energy (logsumexp of the logits)", nick = "Energy")]
    Energy,
    #[enum_value(name = "ReAct: clipped features, then energy", nick = "ReAct")]
    React,
    #[enum_value(
        name = "ASH-S: pruned and scaled features, then energy",
        nick = "ASH-S"
    )]
    AshS,
    #[enum_value(
        name = "ASH-B: pruned and binarized features, then energy",
        nick = "ASH-B"
    )]
    AshB,
    #[enum_value(name = "ASH-P: pruned features, then energy", nick = "ASH-P")]
    AshP,
    #[enum_value(name = "NAP: activation-pattern score alone", nick = "NAP")]
    Nap,
    #[enum_value(name = "NAP-E: NAP fused with energy", nick = "NAP-E")]
    NapE,
    #[enum_value(name = "NAP-R: NAP fused with ReAct", nick = "NAP-R")]
    NapR,
    #[enum_value(name = "NAP-A: NAP fused with ASH", nick = "NAP-A")]
    NapA,
    #[enum_value(name = "NAP-M: NAP fused with MSP", nick = "NAP-M")]
    NapM,
    #[enum_value(name = "MaxLogit: the largest logit", nick = "MaxLogit")]
    MaxLogit,
    #[enum_value(
        name = "GEN: generalized entropy of the top softmax probabilities",
        nick = "GEN"
    )]
    Gen,
    #[enum_value(name = "SCALE: rescaled features, then energy", nick = "SCALE")]
    Scale,
    #[enum_value(name = "DICE: energy of the sparsified head", nick = "DICE")]
    Dice,
    #[enum_value(name = "NAP-D: NAP fused with DICE", nick = "NAP-D")]
    NapD,
    #[enum_value(
        name = "ViM: energy less the residual off the ID principal subspace",
        nick = "ViM"
    )]
    Vim,
}

impl MethodChoice {
    /// The method chosen, `None` for the bundle's own.
    pub fn method(self) -> Option<Method> {
        Some(match self {
            MethodChoice::Bundle => return None,
            MethodChoice::Msp => Method::Msp,
            MethodChoice::Energy => Method::Energy,
            MethodChoice::React => Method::React,
            MethodChoice::AshS => Method::AshS,
            MethodChoice::AshB => Method::AshB,
            MethodChoice::AshP => Method::AshP,
            MethodChoice::Nap => Method::Nap,
            MethodChoice::NapE => Method::NapE,
            MethodChoice::NapR => Method::NapR,
            MethodChoice::NapA => Method::NapA,
            MethodChoice::NapM => Method::NapM,
            MethodChoice::MaxLogit => Method::MaxLogit,
            MethodChoice::Gen => Method::Gen,
            MethodChoice::Scale => Method::Scale,
            MethodChoice::Dice => Method::Dice,
            MethodChoice::NapD => Method::NapD,
            MethodChoice::Vim => Method::Vim,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gstreamer::glib::EnumClass;
    use gstreamer::prelude::StaticType;

    #[test]
    fn every_method_can_be_chosen_by_its_name() {
        let class = EnumClass::with_type(MethodChoice::static_type()).unwrap();
        for method in Method::ALL {
            let value = class
                .value_by_nick(method.name())
                .unwrap_or_else(|| panic!("{method} has no choice"));
            let choice: MethodChoice = class.to_value(value.value()).unwrap().get().unwrap();
            assert_eq!(choice.method(), Some(method));
        }
        assert_eq!(class.values().len(), Method::ALL.len() + 1);
    }
}

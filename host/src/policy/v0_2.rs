//! The `switchyard:policy@0.2.0` contract (`wit/v0.2`), compiled into
//! bindings beside 0.1's. Not yet served: this module holds the bindings and
//! the host's side of the cheaper types, which the 0.2 adapter builds on.

use switchyard_wire::FeatureSet;
use switchyard_wire::feature::{Effort, Feature};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit/v0.2",
        world: "policy",
        additional_derives: [PartialEq],
    });
}

pub use bindings::switchyard::policy::types::Features;

/// Each feature of the gateway's table and its 0.2 flag.
const FLAGS: [(Feature, Features); 20] = [
    (Feature::Stream, Features::STREAM),
    (Feature::FunctionCalling, Features::FUNCTION_CALLING),
    (Feature::WebSearch, Features::WEB_SEARCH),
    (Feature::CustomTools, Features::CUSTOM_TOOLS),
    (Feature::ToolChoiceRequired, Features::TOOL_CHOICE_REQUIRED),
    (Feature::JsonSchema, Features::JSON_SCHEMA),
    (Feature::JsonObject, Features::JSON_OBJECT),
    (Feature::Reasoning(Effort::None), Features::REASONING_NONE),
    (
        Feature::Reasoning(Effort::Minimal),
        Features::REASONING_MINIMAL,
    ),
    (Feature::Reasoning(Effort::Low), Features::REASONING_LOW),
    (
        Feature::Reasoning(Effort::Medium),
        Features::REASONING_MEDIUM,
    ),
    (Feature::Reasoning(Effort::High), Features::REASONING_HIGH),
    (Feature::Reasoning(Effort::Xhigh), Features::REASONING_XHIGH),
    (Feature::Temperature, Features::TEMPERATURE),
    (Feature::TopP, Features::TOP_P),
    (Feature::Vision, Features::VISION),
    (Feature::ParallelToolCalls, Features::PARALLEL_TOOL_CALLS),
    (Feature::PromptCacheKey, Features::PROMPT_CACHE_KEY),
    (Feature::Verbosity, Features::VERBOSITY),
    (Feature::Include, Features::INCLUDE),
];

/// A feature set as 0.2 flags.
pub fn to_flags(set: FeatureSet) -> Features {
    FLAGS
        .iter()
        .filter(|(f, _)| set.contains(*f))
        .fold(Features::empty(), |acc, (_, flag)| acc | *flag)
}

/// 0.2 flags as a feature set.
pub fn from_flags(flags: Features) -> FeatureSet {
    let mut set = FeatureSet::EMPTY;
    for (feature, flag) in FLAGS {
        if flags.contains(flag) {
            set.insert(feature);
        }
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_feature_has_its_own_flag_and_comes_back() {
        assert_eq!(FLAGS.len(), switchyard_wire::feature::ALL.len());
        for feature in switchyard_wire::feature::ALL {
            let mut one = FeatureSet::EMPTY;
            one.insert(feature);
            let flags = to_flags(one);
            assert_ne!(flags, Features::empty(), "{}", feature.name());
            assert_eq!(from_flags(flags), one, "{}", feature.name());
        }
        let all = FLAGS
            .iter()
            .fold(Features::empty(), |acc, (_, flag)| acc | *flag);
        assert_eq!(from_flags(all).len(), 20, "no two features share a flag");
    }
}

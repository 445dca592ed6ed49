//! The model catalog: the bundled list of well-known models (catalog.toml)
//! extended or overridden by the config's `[models."<slug>"]` tables. Served at
//! `GET /v1/models`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use switchyard_wire::FeatureSet;
use switchyard_wire::Usage;
use switchyard_wire::feature::is_known_feature;

/// One model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Model {
    pub slug: String,
    /// Who makes it (`openai`, `anthropic`, `meta`...), for display.
    pub vendor: Option<String>,
    /// The id providers know it by, when it differs from the slug.
    pub upstream_id: Option<String>,
    /// US dollars per 1M uncached input tokens.
    pub input: f64,
    /// US dollars per 1M output tokens.
    pub output: f64,
    /// US dollars per 1M cached input tokens.
    pub cached_input: f64,
    /// 1 is the strongest.
    pub tier: u8,
    pub context_window: u32,
    /// Features supported (listed by their names in the feature table).
    pub features: FeatureSet,
}

impl Model {
    /// Cost in US dollars of a call with this usage.
    pub fn cost(&self, usage: &Usage) -> f64 {
        self.rates().cost(usage)
    }

    /// Its prices alone.
    pub fn rates(&self) -> Rates {
        Rates {
            input: self.input,
            output: self.output,
            cached_input: self.cached_input,
        }
    }
}

/// US dollars per 1M tokens: uncached input, output, cached input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    pub input: f64,
    pub output: f64,
    pub cached_input: f64,
}

impl Rates {
    /// Cost in US dollars of a call with this usage.
    pub fn cost(&self, usage: &Usage) -> f64 {
        let cached = usage.cached_tokens.min(usage.prompt_tokens);
        let uncached = usage.prompt_tokens - cached;
        (uncached as f64 * self.input
            + cached as f64 * self.cached_input
            + usage.completion_tokens as f64 * self.output)
            / 1_000_000.0
    }
}

/// A `[models."<slug>"]` table: every field optional; for a model the catalog
/// does not know, `input`, `output` and `features` are required.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelOverride {
    pub vendor: Option<String>,
    pub upstream_id: Option<String>,
    pub input: Option<f64>,
    pub output: Option<f64>,
    pub cached_input: Option<f64>,
    pub tier: Option<u8>,
    pub context_window: Option<u32>,
    pub features: Option<Vec<String>>,
}

/// All known models by slug.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    models: BTreeMap<String, Model>,
}

#[derive(Deserialize)]
struct BundledFile {
    models: BTreeMap<String, ModelOverride>,
}

impl Catalog {
    /// The models bundled with Switchyard.
    pub fn bundled() -> Catalog {
        let file: BundledFile = match toml::from_str(include_str!("catalog.toml")) {
            Ok(file) => file,
            // The bundled file is tested below; an empty catalog beats a crash.
            Err(_) => return Catalog::default(),
        };
        Catalog::default()
            .extended(&file.models)
            .unwrap_or_default()
    }

    /// This catalog with `overrides` applied; errors name the slug and problem.
    pub fn extended(
        &self,
        overrides: &BTreeMap<String, ModelOverride>,
    ) -> Result<Catalog, (String, String)> {
        let mut models = self.models.clone();
        for (slug, o) in overrides {
            if slug.is_empty() {
                return Err((slug.clone(), "a model slug may not be empty".into()));
            }
            if let Some(bad) = o.features.iter().flatten().find(|f| !is_known_feature(f)) {
                return Err((slug.clone(), format!("features: unknown feature {bad:?}")));
            }
            for (field, price) in [
                ("input", o.input),
                ("output", o.output),
                ("cached_input", o.cached_input),
            ] {
                if let Some(p) = price.filter(|p| !(p.is_finite() && *p >= 0.0)) {
                    return Err((
                        slug.clone(),
                        format!("{field}: price {p} must be a non-negative number"),
                    ));
                }
            }
            let model = match models.get(slug) {
                Some(base) => Model {
                    slug: slug.clone(),
                    vendor: o.vendor.clone().or_else(|| base.vendor.clone()),
                    upstream_id: o.upstream_id.clone().or_else(|| base.upstream_id.clone()),
                    input: o.input.unwrap_or(base.input),
                    output: o.output.unwrap_or(base.output),
                    cached_input: o.cached_input.unwrap_or(base.cached_input),
                    tier: o.tier.unwrap_or(base.tier),
                    context_window: o.context_window.unwrap_or(base.context_window),
                    features: o
                        .features
                        .as_ref()
                        .map_or(base.features, FeatureSet::from_names),
                },
                None => {
                    let (Some(input), Some(output), Some(features)) =
                        (o.input, o.output, &o.features)
                    else {
                        return Err((
                            slug.clone(),
                            "a model the catalog does not know needs `input`, `output` (USD per 1M tokens) and `features`".into(),
                        ));
                    };
                    Model {
                        slug: slug.clone(),
                        vendor: o.vendor.clone(),
                        upstream_id: o.upstream_id.clone(),
                        input,
                        output,
                        cached_input: o.cached_input.unwrap_or(input),
                        tier: o.tier.unwrap_or(3),
                        context_window: o.context_window.unwrap_or(128_000),
                        features: FeatureSet::from_names(features),
                    }
                }
            };
            models.insert(slug.clone(), model);
        }
        Ok(Catalog { models })
    }

    pub fn get(&self, slug: &str) -> Option<&Model> {
        self.models.get(slug)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Model> {
        self.models.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_catalog_loads_completely() {
        let text = include_str!("catalog.toml");
        let file: BundledFile = toml::from_str(text).expect("catalog.toml parses");
        let catalog = Catalog::default()
            .extended(&file.models)
            .expect("catalog.toml is valid");
        for slug in [
            "claude-haiku-4-5",
            "claude-sonnet-4-5",
            "claude-opus-4-1",
            "gpt-5",
            "gpt-5-mini",
            "gpt-4o",
        ] {
            assert!(catalog.get(slug).is_some(), "{slug}");
        }
        assert_eq!(Catalog::bundled().iter().count(), file.models.len());
        let haiku = catalog.get("claude-haiku-4-5").expect("haiku");
        assert_eq!((haiku.input, haiku.output), (1.0, 5.0));
    }

    #[test]
    fn cost_uses_cached_and_output_prices() {
        let catalog = Catalog::bundled();
        let haiku = catalog.get("claude-haiku-4-5").expect("haiku");
        let usage = Usage {
            prompt_tokens: 1_000_000,
            completion_tokens: 100_000,
            cached_tokens: 500_000,
        };
        // 0.5M uncached × $1 + 0.5M cached × $0.10 + 0.1M out × $5
        assert!((haiku.cost(&usage) - 1.05).abs() < 1e-9);
    }

    #[test]
    fn overrides_extend_and_validate() {
        let mut o = BTreeMap::new();
        o.insert(
            "gpt-5".to_string(),
            ModelOverride {
                input: Some(1.0),
                ..Default::default()
            },
        );
        let c = Catalog::bundled().extended(&o).expect("override");
        assert_eq!(c.get("gpt-5").map(|m| m.input), Some(1.0));
        o.insert(
            "mystery".to_string(),
            ModelOverride {
                input: Some(1.0),
                ..Default::default()
            },
        );
        assert!(Catalog::bundled().extended(&o).is_err());
        o.insert(
            "mystery".to_string(),
            ModelOverride {
                input: Some(1.0),
                output: Some(1.0),
                features: Some(vec!["telepathy".into()]),
                ..Default::default()
            },
        );
        let e = Catalog::bundled().extended(&o).expect_err("bad feature");
        assert!(e.1.contains("telepathy"));
    }
}

//! The shape of a component, read before it is compiled: compiling costs
//! time and memory that grow with what the code declares (a 50 KiB function
//! with thousands of locals and loops takes Cranelift a minute and gigabytes),
//! so an upload is measured with `wasmparser` first, in milliseconds, and
//! refused when it exceeds a structural limit, naming the limit.

use wasmparser::{Operator, Parser, Payload};

pub use crate::config::StructureLimits;

/// What a component holds, and its largest function by each measure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Structure {
    pub modules: u64,
    pub functions: u64,
    pub largest_function_bytes: u64,
    pub most_function_locals: u64,
    pub highest_function_complexity: u64,
    pub tables: u64,
    pub memories: u64,
    pub globals: u64,
    pub data_segments: u64,
    pub element_segments: u64,
    pub instances: u64,
}

/// A limit a component broke, named as the config names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StructureError {
    #[error("{what} is {found}; the limit is {limit} (plugins.{key})")]
    Limit {
        what: String,
        found: u64,
        limit: u64,
        key: &'static str,
    },
    #[error("the component is malformed: {0}")]
    Malformed(String),
}

fn check(
    what: impl Into<String>,
    found: u64,
    limit: u64,
    key: &'static str,
) -> Result<(), StructureError> {
    if found > limit {
        return Err(StructureError::Limit {
            what: what.into(),
            found,
            limit,
            key,
        });
    }
    Ok(())
}

/// Measures `bytes` (a component or a core module), stopping at the first
/// limit it breaks.
pub fn measure(bytes: &[u8], limits: &StructureLimits) -> Result<Structure, StructureError> {
    let malformed = |e: wasmparser::BinaryReaderError| StructureError::Malformed(e.to_string());
    let mut s = Structure::default();
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(malformed)?;
        // Sections whose entries are counted against a limit.
        let counted = match &payload {
            Payload::Version {
                encoding: wasmparser::Encoding::Module,
                ..
            } => Some((
                &mut s.modules,
                1,
                limits.max_modules,
                "core modules",
                "max_modules",
            )),
            Payload::FunctionSection(r) => Some((
                &mut s.functions,
                r.count(),
                limits.max_functions,
                "functions",
                "max_functions",
            )),
            Payload::TableSection(r) => Some((
                &mut s.tables,
                r.count(),
                limits.max_tables,
                "tables",
                "max_tables",
            )),
            Payload::MemorySection(r) => Some((
                &mut s.memories,
                r.count(),
                limits.max_memories,
                "memories",
                "max_memories",
            )),
            Payload::GlobalSection(r) => Some((
                &mut s.globals,
                r.count(),
                limits.max_globals,
                "globals",
                "max_globals",
            )),
            Payload::DataSection(r) => Some((
                &mut s.data_segments,
                r.count(),
                limits.max_data_segments,
                "data segments",
                "max_data_segments",
            )),
            Payload::ElementSection(r) => Some((
                &mut s.element_segments,
                r.count(),
                limits.max_element_segments,
                "element segments",
                "max_element_segments",
            )),
            Payload::InstanceSection(r) => Some((
                &mut s.instances,
                r.count(),
                limits.max_instances,
                "instances",
                "max_instances",
            )),
            Payload::ComponentInstanceSection(r) => Some((
                &mut s.instances,
                r.count(),
                limits.max_instances,
                "instances",
                "max_instances",
            )),
            _ => None,
        };
        if let Some((total, count, limit, what, key)) = counted {
            *total += u64::from(count);
            check(format!("the number of {what}"), *total, limit, key)?;
        }
        if let Payload::CodeSectionEntry(body) = payload {
            let size = body.range().len() as u64;
            check(
                format!("a function body of {size} bytes"),
                size,
                limits.max_function_bytes,
                "max_function_bytes",
            )?;
            let mut locals = 0u64;
            let mut reader = body.get_locals_reader().map_err(malformed)?;
            for _ in 0..reader.get_count() {
                let (count, _) = reader.read().map_err(malformed)?;
                locals += u64::from(count);
            }
            check(
                "the number of locals of one function",
                locals,
                limits.max_function_locals,
                "max_function_locals",
            )?;
            let mut blocks = 0u64;
            let mut ops = body.get_operators_reader().map_err(malformed)?;
            while !ops.eof() {
                if matches!(
                    ops.read().map_err(malformed)?,
                    Operator::Block { .. } | Operator::Loop { .. } | Operator::If { .. }
                ) {
                    blocks += 1;
                }
            }
            let complexity = locals.saturating_mul(blocks + 1);
            check(
                format!(
                    "the complexity of a function with {locals} locals and {blocks} blocks (locals × blocks)"
                ),
                complexity,
                limits.max_function_complexity,
                "max_function_complexity",
            )?;
            s.largest_function_bytes = s.largest_function_bytes.max(size);
            s.most_function_locals = s.most_function_locals.max(locals);
            s.highest_function_complexity = s.highest_function_complexity.max(complexity);
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_policy_is_measured_and_fits_the_defaults() {
        let s = measure(
            super::super::DEFAULT_POLICY_WASM,
            &StructureLimits::default(),
        )
        .expect("fits");
        assert!(s.modules >= 1 && s.functions > 100, "{s:?}");
        assert!(s.largest_function_bytes > 0 && s.most_function_locals > 0);
        assert!(s.highest_function_complexity >= s.most_function_locals);
    }

    #[test]
    fn each_limit_is_named_when_broken() {
        let wasm = super::super::DEFAULT_POLICY_WASM;
        let tight = |set: fn(&mut StructureLimits)| {
            let mut limits = StructureLimits::default();
            set(&mut limits);
            measure(wasm, &limits).expect_err("over").to_string()
        };
        assert!(tight(|l| l.max_functions = 10).contains("plugins.max_functions"));
        assert!(tight(|l| l.max_function_bytes = 100).contains("plugins.max_function_bytes"));
        assert!(tight(|l| l.max_function_locals = 2).contains("plugins.max_function_locals"));
        assert!(
            tight(|l| l.max_function_complexity = 10).contains("plugins.max_function_complexity")
        );
        assert!(tight(|l| l.max_memories = 0).contains("plugins.max_memories"));
        assert!(matches!(
            measure(&wasm[..wasm.len() / 2], &StructureLimits::default()),
            Err(StructureError::Malformed(_))
        ));
    }
}

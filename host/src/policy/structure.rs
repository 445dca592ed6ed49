//! The shape of a component, read before it is compiled: compiling costs
//! time and memory that grow with what the code declares (a 50 KiB function
//! with thousands of locals and loops takes Cranelift a minute and gigabytes),
//! so an upload is measured with `wasmparser` first, in milliseconds, and
//! refused when it exceeds a structural limit, naming the limit.

use wasmparser::{Operator, Parser, Payload};

/// Structural limits of a component (its core modules together, unless a
/// limit says per function).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StructureLimits {
    /// Core modules, nested ones included.
    pub max_modules: u64,
    /// Functions defined, across modules.
    pub max_functions: u64,
    /// Bytes of one function body.
    pub max_function_bytes: u64,
    /// Locals one function declares.
    pub max_function_locals: u64,
    /// One function's locals times its control blocks (`block`, `loop`,
    /// `if`): what the compiler's SSA construction grows with.
    pub max_function_complexity: u64,
    pub max_tables: u64,
    pub max_memories: u64,
    pub max_globals: u64,
    pub max_data_segments: u64,
    pub max_element_segments: u64,
    /// Core and component instances the component creates.
    pub max_instances: u64,
}

impl Default for StructureLimits {
    /// Far above what real policies use (SECURITY.md gives the figures of
    /// the bundled policies), far below what makes compiling slow.
    fn default() -> Self {
        Self {
            max_modules: 64,
            max_functions: 100_000,
            max_function_bytes: 1 << 20,
            max_function_locals: 20_000,
            max_function_complexity: 2_000_000,
            max_tables: 256,
            max_memories: 64,
            max_globals: 100_000,
            max_data_segments: 100_000,
            max_element_segments: 100_000,
            max_instances: 1_000,
        }
    }
}

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
        match payload.map_err(malformed)? {
            Payload::Version {
                encoding: wasmparser::Encoding::Module,
                ..
            } => {
                s.modules += 1;
                check(
                    "the number of core modules",
                    s.modules,
                    limits.max_modules,
                    "max_modules",
                )?;
            }
            Payload::FunctionSection(r) => {
                s.functions += u64::from(r.count());
                check(
                    "the number of functions",
                    s.functions,
                    limits.max_functions,
                    "max_functions",
                )?;
            }
            Payload::TableSection(r) => {
                s.tables += u64::from(r.count());
                check(
                    "the number of tables",
                    s.tables,
                    limits.max_tables,
                    "max_tables",
                )?;
            }
            Payload::MemorySection(r) => {
                s.memories += u64::from(r.count());
                check(
                    "the number of memories",
                    s.memories,
                    limits.max_memories,
                    "max_memories",
                )?;
            }
            Payload::GlobalSection(r) => {
                s.globals += u64::from(r.count());
                check(
                    "the number of globals",
                    s.globals,
                    limits.max_globals,
                    "max_globals",
                )?;
            }
            Payload::DataSection(r) => {
                s.data_segments += u64::from(r.count());
                check(
                    "the number of data segments",
                    s.data_segments,
                    limits.max_data_segments,
                    "max_data_segments",
                )?;
            }
            Payload::ElementSection(r) => {
                s.element_segments += u64::from(r.count());
                check(
                    "the number of element segments",
                    s.element_segments,
                    limits.max_element_segments,
                    "max_element_segments",
                )?;
            }
            Payload::InstanceSection(r) => {
                s.instances += u64::from(r.count());
                check(
                    "the number of instances",
                    s.instances,
                    limits.max_instances,
                    "max_instances",
                )?;
            }
            Payload::ComponentInstanceSection(r) => {
                s.instances += u64::from(r.count());
                check(
                    "the number of instances",
                    s.instances,
                    limits.max_instances,
                    "max_instances",
                )?;
            }
            Payload::CodeSectionEntry(body) => {
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
            _ => {}
        }
    }
    Ok(s)
}

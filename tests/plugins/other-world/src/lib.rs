//! Test fixture: a valid component for a world that is not `switchyard:policy/policy`.

wit_bindgen::generate!({
    world: "other",
    path: "wit",
});

struct Other;

impl Guest for Other {
    fn run() -> String {
        "not a routing policy".into()
    }
}

export!(Other);

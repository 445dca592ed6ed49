//! `POST /v1/responses`: the OpenAI Responses API, translated by
//! [`switchyard_wire::responses_in`].

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use switchyard_wire::Api;
use switchyard_wire::completion::Completion;
use switchyard_wire::responses_in::{self as wire, Echo};
use switchyard_wire::stream::StreamEncoder;

use super::AppState;
use super::chat::{canonical, json_object};
use super::endpoint::{self, Endpoint};
use crate::route::{RouteError, RouteRequest};

/// The Responses API endpoint.
pub struct Responses;

impl Endpoint for Responses {
    type Echo = Echo;

    const ROUTE: &'static str = "/v1/responses";

    fn parse(bytes: &[u8], headers: &HeaderMap) -> Result<(RouteRequest, Echo), RouteError> {
        let body = json_object(bytes)?;
        let canonical_body = wire::to_canonical(&body)?;
        let mut request = canonical(canonical_body, headers)?;
        request.api = Api::Responses;
        let echo = Echo::new(&body);
        Ok((request, echo))
    }

    fn complete(body: Completion, echo: Echo) -> Completion {
        Completion::from_value(wire::complete(body.into_value(), echo))
    }

    fn encoder(echo: Echo) -> Box<dyn StreamEncoder> {
        wire::encoder(echo)
    }
}

pub async fn create(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    endpoint::handle::<Responses>(state, headers, body).await
}

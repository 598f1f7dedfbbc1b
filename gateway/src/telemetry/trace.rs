//! Server spans: W3C trace ids for every request, exported by OTLP/HTTP when configured.
//!
//! Every request gets a span identity, whether or not tracing is exported: the trace id of a
//! valid incoming `traceparent` or a new one, and a fresh span id. The proxy logs the trace id
//! and sends [`ProxySpan::traceparent_for_upstream`] upstream, so traces stay connected across
//! Meridian even with no collector. Without OTLP this costs two random numbers.
//!
//! With OTLP, spans go through the OpenTelemetry SDK: sampling is parent-based (a caller's
//! decision is kept; new traces are sampled with probability `sample_ratio`), and sampled
//! spans are batched and posted as protobuf to `{endpoint}/v1/traces` from the SDK's own
//! background thread with a blocking HTTP client, so no async runtime is needed in the caller.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::time::SystemTime;

use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt as _, TraceFlags, TraceId,
    TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{SpanExporter, WithExportConfig as _};
use opentelemetry_sdk::error::OTelSdkError;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider, Span as SdkSpan};
use opentelemetry_sdk::Resource;

use super::traceparent::{push_hex, TraceParent, FLAG_SAMPLED};
use crate::config::model::Otlp;

/// The OTLP/HTTP path of the trace signal.
const TRACES_PATH: &str = "/v1/traces";

/// Starts server spans and exports the sampled ones.
pub struct Tracer {
    /// `None` when no OTLP endpoint is configured.
    export: Option<Export>,
}

/// The SDK pieces used when exporting.
struct Export {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

/// Why the OTLP exporter could not be built or shut down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceExportError(String);

impl fmt::Display for TraceExportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OTLP trace export: {}", self.0)
    }
}

impl std::error::Error for TraceExportError {}

/// What a server span records about the request when it starts.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestAttrs<'a> {
    /// Request method.
    pub method: &'a str,
    /// Request path.
    pub path: &'a str,
    /// `Host` header or `:authority`.
    pub host: &'a str,
    /// The matched route's name, if any.
    pub route: Option<&'a str>,
    /// The client's address, if known.
    pub client_ip: Option<IpAddr>,
    /// HTTP version as `1.0`, `1.1` or `2`.
    pub protocol_version: &'a str,
    /// The request id.
    pub request_id: &'a str,
}

/// What a server span records when it ends.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResponseAttrs<'a> {
    /// The upstream pool, if the request reached one.
    pub upstream: Option<&'a str>,
    /// The address of the last target tried.
    pub upstream_addr: Option<&'a str>,
    /// Attempts made upstream.
    pub attempts: u32,
    /// Short reason when the proxy failed the request; marks the span as an error.
    pub error: Option<&'a str>,
}

impl Tracer {
    /// A tracer exporting to `otlp`, or one that only produces ids when it is `None`.
    ///
    /// Starts the SDK's batch thread; call it outside async code or in `spawn_blocking`.
    pub fn new(otlp: Option<&Otlp>) -> Result<Tracer, TraceExportError> {
        let Some(otlp) = otlp else {
            return Ok(Tracer { export: None });
        };
        let endpoint = format!("{}{TRACES_PATH}", otlp.endpoint.trim_end_matches('/'));
        let exporter = SpanExporter::builder()
            .with_http()
            .with_endpoint(endpoint)
            .build()
            .map_err(|e| TraceExportError(e.to_string()))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                otlp.sample_ratio,
            ))))
            .with_resource(
                Resource::builder()
                    .with_service_name(otlp.service_name.clone())
                    .build(),
            )
            .build();
        let tracer = provider.tracer("meridian");
        Ok(Tracer {
            export: Some(Export { provider, tracer }),
        })
    }

    /// Starts the server span of a request that began at `start`, as a child of `parent`
    /// (the request's valid `traceparent`) or as the root of a new trace.
    pub fn start_server_span(
        &self,
        name: &str,
        parent: Option<&TraceParent>,
        start: SystemTime,
        attrs: &RequestAttrs<'_>,
    ) -> ProxySpan {
        match &self.export {
            None => ProxySpan::unexported(parent),
            Some(export) => export.start(name, parent, start, attrs),
        }
    }

    /// Exports the spans still queued and stops the exporter. Blocks until the export is
    /// done or has timed out, so call it outside async code or in `spawn_blocking`. Spans
    /// started afterwards are not exported.
    pub fn shutdown(&self) -> Result<(), TraceExportError> {
        let Some(export) = &self.export else {
            return Ok(());
        };
        match export.provider.shutdown() {
            Ok(()) | Err(OTelSdkError::AlreadyShutdown) => Ok(()),
            Err(e) => Err(TraceExportError(e.to_string())),
        }
    }
}

impl Export {
    /// Starts an SDK span; keeps it only when it was sampled.
    fn start(
        &self,
        name: &str,
        parent: Option<&TraceParent>,
        start: SystemTime,
        attrs: &RequestAttrs<'_>,
    ) -> ProxySpan {
        let cx = match parent {
            Some(p) => Context::new().with_remote_span_context(SpanContext::new(
                TraceId::from_bytes(p.trace_id),
                SpanId::from_bytes(p.parent_id),
                TraceFlags::new(p.flags & FLAG_SAMPLED),
                true,
                TraceState::NONE,
            )),
            None => Context::new(),
        };
        let span = self
            .tracer
            .span_builder(name.to_owned())
            .with_kind(SpanKind::Server)
            .with_start_time(start)
            .with_attributes(request_attributes(attrs))
            .start_with_context(&self.tracer, &cx);
        let sc = span.span_context();
        let sampled = sc.is_sampled();
        ProxySpan {
            trace_id: sc.trace_id().to_bytes(),
            span_id: sc.span_id().to_bytes(),
            sampled,
            span: sampled.then_some(span),
        }
    }
}

/// The OpenTelemetry attributes of a request.
fn request_attributes(attrs: &RequestAttrs<'_>) -> Vec<KeyValue> {
    let mut kv = vec![
        KeyValue::new("http.request.method", attrs.method.to_owned()),
        KeyValue::new("url.path", attrs.path.to_owned()),
        KeyValue::new("server.address", attrs.host.to_owned()),
        KeyValue::new(
            "network.protocol.version",
            attrs.protocol_version.to_owned(),
        ),
        KeyValue::new("meridian.request_id", attrs.request_id.to_owned()),
    ];
    if let Some(route) = attrs.route {
        kv.push(KeyValue::new("meridian.route", route.to_owned()));
    }
    if let Some(ip) = attrs.client_ip {
        kv.push(KeyValue::new("client.address", ip.to_string()));
    }
    kv
}

/// The server span of one request.
///
/// Dropping it without [`ProxySpan::end`] still ends (and exports) a sampled span.
pub struct ProxySpan {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    sampled: bool,
    /// The SDK span, only when it is sampled and exported.
    span: Option<SdkSpan>,
}

impl ProxySpan {
    /// Ids for a request when nothing is exported: the parent's trace (and its sampling
    /// decision) or a new unsampled trace, and a new span id.
    fn unexported(parent: Option<&TraceParent>) -> ProxySpan {
        let (trace_id, sampled) = match parent {
            Some(p) => (p.trace_id, p.sampled()),
            None => (non_zero_random::<16>(), false),
        };
        ProxySpan {
            trace_id,
            span_id: non_zero_random::<8>(),
            sampled,
            span: None,
        }
    }

    /// The trace id as 32 lower-case hex digits (for logs).
    pub fn trace_id_hex(&self) -> String {
        let mut out = String::with_capacity(32);
        push_hex(&mut out, &self.trace_id);
        out
    }

    /// The trace id.
    pub fn trace_id(&self) -> [u8; 16] {
        self.trace_id
    }

    /// This span's id.
    pub fn span_id(&self) -> [u8; 8] {
        self.span_id
    }

    /// Whether the trace is sampled.
    pub fn sampled(&self) -> bool {
        self.sampled
    }

    /// Whether this span is exported (sampled with OTLP on), so [`ProxySpan::end`] records
    /// its attributes; otherwise ending it does nothing.
    pub fn is_exported(&self) -> bool {
        self.span.is_some()
    }

    /// The `traceparent` to send upstream: this trace, this span as the parent, and the
    /// sampling decision.
    pub fn traceparent_for_upstream(&self) -> String {
        TraceParent {
            trace_id: self.trace_id,
            parent_id: self.span_id,
            flags: if self.sampled { FLAG_SAMPLED } else { 0 },
        }
        .to_header()
    }

    /// Ends the span now with the response status sent to the client. A status of 500 or
    /// more, or an error, marks the span as failed.
    pub fn end(self, status: u16, attrs: &ResponseAttrs<'_>) {
        let Some(mut span) = self.span else { return };
        span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
        if let Some(upstream) = attrs.upstream {
            span.set_attribute(KeyValue::new("meridian.upstream", upstream.to_owned()));
        }
        if let Some(addr) = attrs.upstream_addr {
            span.set_attribute(KeyValue::new("meridian.upstream.address", addr.to_owned()));
        }
        span.set_attribute(KeyValue::new(
            "meridian.upstream.attempts",
            i64::from(attrs.attempts),
        ));
        match attrs.error {
            Some(error) => {
                span.set_attribute(KeyValue::new("error.type", error.to_owned()));
                span.set_status(Status::error(Cow::Owned(error.to_owned())));
            }
            None if status >= 500 => {
                span.set_attribute(KeyValue::new("error.type", status.to_string()));
                span.set_status(Status::error(Cow::Borrowed("")));
            }
            None => {}
        }
        span.end();
    }
}

/// `N` random bytes, not all zero (an all-zero id is invalid).
fn non_zero_random<const N: usize>() -> [u8; N] {
    let mut id: [u8; N] = rand::random();
    if id.iter().all(|&b| b == 0) {
        id[N - 1] = 1;
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
    use opentelemetry_proto::tonic::common::v1::KeyValue as ProtoKeyValue;
    use opentelemetry_proto::tonic::trace::v1::Span as ProtoSpan;
    use prost::Message as _;
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc;
    use std::sync::Arc;
    use std::thread::JoinHandle;
    use std::time::Duration;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const UNSAMPLED_PARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";

    /// Largest request body the test receiver accepts.
    const MAX_BODY: usize = 16 << 20;

    /// A minimal OTLP/HTTP collector: decodes `POST /v1/traces` bodies and passes each
    /// request on a channel.
    struct Collector {
        addr: SocketAddr,
        stop: Arc<AtomicBool>,
        thread: Option<JoinHandle<()>>,
    }

    impl Collector {
        fn start() -> (
            Collector,
            mpsc::Receiver<(String, ExportTraceServiceRequest)>,
        ) {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            let stop = Arc::new(AtomicBool::new(false));
            let (tx, rx) = mpsc::channel();
            let thread_stop = Arc::clone(&stop);
            let thread = std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if thread_stop.load(Ordering::Acquire) {
                        return;
                    }
                    if let Ok(stream) = stream {
                        serve(stream, &tx);
                    }
                }
            });
            let collector = Collector {
                addr,
                stop,
                thread: Some(thread),
            };
            (collector, rx)
        }

        fn otlp(&self, sample_ratio: f64) -> Otlp {
            Otlp {
                endpoint: format!("http://{}/", self.addr),
                service_name: "meridian-test".into(),
                sample_ratio,
            }
        }
    }

    impl Drop for Collector {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Release);
            // Wakes the accept loop so it sees the flag.
            let _ = TcpStream::connect(self.addr);
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }

    /// Serves HTTP/1.1 requests on one connection until the client closes it.
    fn serve(stream: TcpStream, tx: &mpsc::Sender<(String, ExportTraceServiceRequest)>) {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut writer = stream;
        loop {
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                return;
            }
            let mut content_length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                if let Some((name, value)) = line.split_once(':') {
                    if name.eq_ignore_ascii_case("content-length") {
                        content_length = value.trim().parse().expect("content-length");
                    }
                }
            }
            assert!(content_length <= MAX_BODY, "body too large");
            let mut body = vec![0; content_length];
            reader.read_exact(&mut body).expect("body");
            let request = ExportTraceServiceRequest::decode(body.as_slice()).expect("protobuf");
            let target = request_line
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ");
            let _ = tx.send((target, request));
            writer
                .write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n",
                )
                .expect("respond");
        }
    }

    /// Every span received, with the `service.name` of its resource.
    fn received(
        rx: &mpsc::Receiver<(String, ExportTraceServiceRequest)>,
    ) -> Vec<(String, ProtoSpan)> {
        let mut spans = Vec::new();
        for (target, request) in rx.try_iter() {
            assert_eq!(target, "POST /v1/traces");
            for rs in request.resource_spans {
                let resource = rs.resource.expect("resource");
                let service = string_attr(&resource.attributes, "service.name").expect("name");
                for ss in rs.scope_spans {
                    spans.extend(ss.spans.into_iter().map(|s| (service.clone(), s)));
                }
            }
        }
        spans
    }

    fn string_attr(attrs: &[ProtoKeyValue], key: &str) -> Option<String> {
        attrs.iter().find(|kv| kv.key == key).and_then(|kv| {
            match kv.value.as_ref()?.value.as_ref()? {
                AnyValue::StringValue(s) => Some(s.clone()),
                _ => None,
            }
        })
    }

    fn int_attr(attrs: &[ProtoKeyValue], key: &str) -> Option<i64> {
        attrs.iter().find(|kv| kv.key == key).and_then(|kv| {
            match kv.value.as_ref()?.value.as_ref()? {
                AnyValue::IntValue(i) => Some(*i),
                _ => None,
            }
        })
    }

    fn request() -> RequestAttrs<'static> {
        RequestAttrs {
            method: "GET",
            path: "/v1/urls/abc",
            host: "api.example.com",
            route: Some("urls"),
            client_ip: Some(IpAddr::from([192, 0, 2, 7])),
            protocol_version: "1.1",
            request_id: "req-1",
        }
    }

    #[test]
    fn exports_sampled_spans_with_their_remote_parent() {
        let (collector, rx) = Collector::start();
        // Ratio 0: only a sampled parent makes a span sampled.
        let tracer = Tracer::new(Some(&collector.otlp(0.0))).expect("tracer");
        let parent = TraceParent::parse(PARENT).expect("parent");
        let start = SystemTime::now();

        let child = tracer.start_server_span("GET urls", Some(&parent), start, &request());
        assert!(child.sampled());
        assert_eq!(child.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(child.span_id(), parent.parent_id);
        let upstream = TraceParent::parse(&child.traceparent_for_upstream()).expect("valid");
        assert_eq!(upstream.trace_id, parent.trace_id);
        assert_eq!(upstream.parent_id, child.span_id());
        assert_eq!(upstream.flags, FLAG_SAMPLED);
        let child_id = child.span_id();

        let unsampled_parent = TraceParent::parse(UNSAMPLED_PARENT).expect("parent");
        let unsampled =
            tracer.start_server_span("GET x", Some(&unsampled_parent), start, &request());
        assert!(!unsampled.sampled());
        assert_eq!(unsampled.trace_id(), unsampled_parent.trace_id);
        assert!(unsampled.traceparent_for_upstream().ends_with("-00"));

        let root = tracer.start_server_span("GET y", None, start, &request());
        assert!(!root.sampled());
        assert_ne!(root.trace_id(), [0; 16]);

        child.end(
            502,
            &ResponseAttrs {
                upstream: Some("urls"),
                upstream_addr: Some("127.0.0.1:9101"),
                attempts: 2,
                error: None,
            },
        );
        unsampled.end(200, &ResponseAttrs::default());
        root.end(200, &ResponseAttrs::default());
        tracer.shutdown().expect("shutdown");

        let spans = received(&rx);
        assert_eq!(spans.len(), 1, "only the sampled span is exported");
        let (service, span) = &spans[0];
        assert_eq!(service, "meridian-test");
        assert_eq!(span.name, "GET urls");
        assert_eq!(span.trace_id, parent.trace_id);
        assert_eq!(span.parent_span_id, parent.parent_id);
        assert_eq!(span.span_id, child_id);
        assert_eq!(span.kind, 2, "server");
        assert_eq!(
            int_attr(&span.attributes, "http.response.status_code"),
            Some(502)
        );
        assert_eq!(
            int_attr(&span.attributes, "meridian.upstream.attempts"),
            Some(2)
        );
        assert_eq!(
            string_attr(&span.attributes, "meridian.upstream").as_deref(),
            Some("urls")
        );
        assert_eq!(
            string_attr(&span.attributes, "client.address").as_deref(),
            Some("192.0.2.7")
        );
        assert_eq!(
            span.status.as_ref().map(|s| s.code),
            Some(2),
            "error status"
        );
        let start_nanos = start
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("after epoch")
            .as_nanos();
        assert_eq!(u128::from(span.start_time_unix_nano), start_nanos);
        drop(collector);
    }

    #[test]
    fn samples_new_traces_by_ratio() {
        let (collector, rx) = Collector::start();
        // Built and used inside an async runtime, as the proxy does.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let (tracer, trace_id) = runtime.block_on(async {
            let tracer = Tracer::new(Some(&collector.otlp(1.0))).expect("tracer");
            let root = tracer.start_server_span("GET /", None, SystemTime::now(), &request());
            assert!(root.sampled());
            assert!(root.traceparent_for_upstream().ends_with("-01"));
            let trace_id = root.trace_id();
            root.end(200, &ResponseAttrs::default());
            (tracer, trace_id)
        });
        tracer.shutdown().expect("shutdown");
        tracer.shutdown().expect("a second shutdown is harmless");

        let spans = received(&rx);
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].1.trace_id, trace_id);
        assert!(spans[0].1.parent_span_id.is_empty(), "a root span");
        assert_eq!(spans[0].1.status.as_ref().map(|s| s.code), Some(0), "unset");
    }

    #[test]
    fn without_otlp_ids_are_still_made_and_propagated() {
        let tracer = Tracer::new(None).expect("tracer");
        let parent = TraceParent::parse(PARENT).expect("parent");
        let child = tracer.start_server_span("GET", Some(&parent), SystemTime::now(), &request());
        assert_eq!(child.trace_id(), parent.trace_id);
        assert_ne!(child.span_id(), parent.parent_id);
        assert!(child.sampled());
        let header = TraceParent::parse(&child.traceparent_for_upstream()).expect("valid");
        assert_eq!(header.trace_id, parent.trace_id);
        assert_eq!(header.parent_id, child.span_id());
        assert_eq!(header.flags, FLAG_SAMPLED);

        let a = tracer.start_server_span("GET", None, SystemTime::now(), &request());
        let b = tracer.start_server_span("GET", None, SystemTime::now(), &request());
        assert_ne!(a.trace_id(), b.trace_id());
        assert_ne!(a.trace_id(), [0; 16]);
        assert!(!a.sampled());
        let header = TraceParent::parse(&a.traceparent_for_upstream()).expect("valid");
        assert_eq!(header.trace_id, a.trace_id());
        assert_eq!(header.flags, 0);
        assert_eq!(a.trace_id_hex().len(), 32);
        a.end(200, &ResponseAttrs::default());
        tracer.shutdown().expect("nothing to shut down");
    }
}

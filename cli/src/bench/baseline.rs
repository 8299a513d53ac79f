//! The baselines' server: a bare tonic service under the node's own name
//! (`exchange.node.v1.Node`) behind the same mutual TLS and identity check as the node, answering
//! Get with one fixed, pre-serialized reply and Query with a stream of pre-serialized messages.
//! It decodes the request and decides, reads, masks and audits nothing: what a call costs with
//! none of the exchange's work in it. Any other method is UNIMPLEMENTED.

use std::convert::Infallible;
use std::marker::PhantomData;
use std::sync::Arc;

use bytes::{BufMut as _, Bytes};
use exchange_proto::node::v1 as npb;
use exchange_transport::server::{RunError, Server};
use exchange_transport::tls::TlsFiles;
use tonic::body::Body;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{http, BoxFuture, Context, Poll, Service};
use tonic::server::NamedService;
use tonic::{Request, Response, Status};

/// What the baseline answers.
pub(crate) struct Replies {
    /// The encoded `GetResponse` every Get gets.
    pub(crate) get: Bytes,
    /// The encoded `QueryResponse` messages every Query gets, in order.
    pub(crate) query: Vec<Bytes>,
}

#[derive(Clone)]
struct Baseline(Arc<Replies>);

impl NamedService for Baseline {
    const NAME: &'static str = "exchange.node.v1.Node";
}

/// Sends pre-serialized messages as they are; decodes requests as the node does.
struct RawCodec<D>(PhantomData<D>);

impl<D: prost::Message + Default + Send + 'static> Codec for RawCodec<D> {
    type Encode = Bytes;
    type Decode = D;
    type Encoder = RawEncoder;
    type Decoder = ProstDecoder<D>;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> ProstDecoder<D> {
        ProstDecoder(PhantomData)
    }
}

struct RawEncoder;

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

struct ProstDecoder<D>(PhantomData<D>);

impl<D: prost::Message + Default> Decoder for ProstDecoder<D> {
    type Item = D;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<D>, Status> {
        D::decode(src).map(Some).map_err(|e| Status::internal(e.to_string()))
    }
}

struct GetSvc(Arc<Replies>);

impl Service<Request<npb::GetRequest>> for GetSvc {
    type Response = Response<Bytes>;
    type Error = Status;
    type Future = std::future::Ready<Result<Response<Bytes>, Status>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<npb::GetRequest>) -> Self::Future {
        std::future::ready(Ok(Response::new(self.0.get.clone())))
    }
}

type ByteStream = std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Bytes, Status>> + Send>>;

struct QuerySvc(Arc<Replies>);

impl Service<Request<npb::QueryRequest>> for QuerySvc {
    type Response = Response<ByteStream>;
    type Error = Status;
    type Future = std::future::Ready<Result<Response<ByteStream>, Status>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<npb::QueryRequest>) -> Self::Future {
        let replies = self.0.clone();
        let messages = (0..replies.query.len()).map(move |i| Ok(replies.query[i].clone()));
        std::future::ready(Ok(Response::new(Box::pin(futures_util::stream::iter(messages)))))
    }
}

impl Service<http::Request<Body>> for Baseline {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let replies = self.0.clone();
        Box::pin(async move {
            Ok(match request.uri().path() {
                "/exchange.node.v1.Node/Get" => {
                    let mut grpc = tonic::server::Grpc::new(RawCodec::<npb::GetRequest>(PhantomData));
                    grpc.unary(GetSvc(replies), request).await
                }
                "/exchange.node.v1.Node/Query" => {
                    let mut grpc = tonic::server::Grpc::new(RawCodec::<npb::QueryRequest>(PhantomData));
                    grpc.server_streaming(QuerySvc(replies), request).await
                }
                _ => Status::unimplemented("the bench's baseline server answers Get and Query only").into_http(),
            })
        })
    }
}

/// Serves the baseline on `listener` with the TLS material `tls` (the node's), until `stop`.
pub(crate) async fn serve(
    tls: TlsFiles,
    trust_domain: &str,
    replies: Replies,
    listener: tokio::net::TcpListener,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let mut server = Server::new(
        "baseline",
        &tls,
        trust_domain,
        Arc::new(|_| Ok(())),
        exchange_proto::node::v1::FILE_DESCRIPTOR_SET,
    )?;
    server.add_service(Baseline(Arc::new(replies))).await;
    server.serve(listener, stop).await
}

//! The WebSockets: an auction's live room (a snapshot on connect, then
//! every event in sequence order, bids in, results out) and a bidder's
//! socket (bids on any auction in, results out, no events: for clients
//! that bid on many auctions, or fast, and follow them elsewhere).
//!
//! Close codes: 1001 server shutting down; 1003 binary frame; 1009 message
//! larger than [`WsConfig::max_message_bytes`](crate::WsConfig), however
//! large (one beyond the largest frame read at all is not read); 1011 the
//! server could not load the auction; 4408 idle timeout (no frame from the
//! client for [`WsConfig::idle_timeout`](crate::WsConfig)). A client that
//! does not read fast enough is dropped after
//! [`WsConfig::send_timeout`](crate::WsConfig), and one that falls behind
//! the room's buffer gets a fresh `snapshot` instead of a backlog.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use neighborbid_core::{AuctionId, AuctionView, Delivery, Event, IdempotencyKey, Watch};

use crate::error::ApiError;
use crate::extract::Path;
use crate::identity::Actor;
use crate::identity::{MaybeSignedIn, SignedIn};
use crate::state::AppState;
use crate::wire::{AuctionBody, BidBody, BidRequest, ClientMessage, ServerMessage};

/// Close code: the client sent nothing for too long.
pub const CLOSE_IDLE: u16 = 4408;

/// The recent public event messages of each auction, each rendered once
/// for all its watchers without private notices (with 2,000 watchers, one
/// JSON encoding instead of 2,000). Watchers do not all send the same event
/// at the same moment (one is busy with its own bid, another is slow), so
/// one slot per auction would be overwritten back and forth: the last
/// [`Rendered::KEPT`] events are kept. Its `server_now` is when it was
/// rendered.
#[derive(Default)]
pub(crate) struct Rendered {
    recent: Mutex<HashMap<AuctionId, VecDeque<(u64, Utf8Bytes)>>>,
}

impl Rendered {
    /// Events kept per auction: a watcher further behind than this renders
    /// its own copy.
    const KEPT: usize = 64;

    /// The message for `event`, rendered by the first watcher to ask.
    fn get_or_render(
        &self,
        event: &Event,
        render: impl FnOnce() -> Option<String>,
    ) -> Option<Utf8Bytes> {
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        let kept = recent.entry(event.auction_id).or_default();
        if let Some((_, text)) = kept.iter().find(|(seq, _)| *seq == event.seq) {
            return Some(text.clone());
        }
        let text = Utf8Bytes::from(render()?);
        // Kept in ascending order, the oldest dropped beyond KEPT (so one
        // older than all kept is not kept).
        let at = kept.partition_point(|(seq, _)| *seq < event.seq);
        kept.insert(at, (event.seq, text.clone()));
        if kept.len() > Self::KEPT {
            kept.pop_front();
        }
        Some(text)
    }

    /// Forgets an auction nobody watches any more.
    fn forget(&self, auction: AuctionId) {
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        recent.remove(&auction);
    }
}

/// How long a closing connection waits for the client's close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

pub(crate) async fn live(
    State(state): State<AppState>,
    MaybeSignedIn(viewer): MaybeSignedIn,
    Path(id): Path<i64>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let upgrade = upgrade?;
    let auction = AuctionId(id);
    // Watch before loading, so no event falls between the snapshot and the
    // room; the load also refuses unknown auctions with a 404 before
    // upgrading.
    let watch = state.hub.watch(auction, viewer.as_ref().map(|v| v.user));
    let first = state.engine.auction(auction, state.recent_bids()).await?;
    Ok(open(
        state,
        upgrade,
        viewer,
        Some((Room { auction, watch }, first)),
    ))
}

/// A bidder's socket: the signed-in caller bids on any auction, naming it
/// in each `bid` message, and gets each answer; no room events.
pub(crate) async fn bidder(
    State(state): State<AppState>,
    SignedIn(me): SignedIn,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    Ok(open(state, upgrade?, Some(me), None))
}

/// Upgrades to a connection that follows `room` (from its first view),
/// or to a bidder's socket without one.
fn open(
    state: AppState,
    upgrade: WebSocketUpgrade,
    viewer: Option<Actor>,
    room: Option<(Room, AuctionView)>,
) -> Response {
    let frame_limit = state.config.ws.max_frame_bytes;
    let buffer = state.config.ws.buffer_bytes;
    upgrade
        .max_message_size(frame_limit)
        .max_frame_size(frame_limit)
        .read_buffer_size(buffer)
        .write_buffer_size(buffer)
        .on_upgrade(move |socket| async move {
            let (room, first) = room.unzip();
            let auction = room.as_ref().map(|room| room.auction);
            let connection = Connection {
                state,
                viewer,
                socket,
                room,
                seq: 0,
                held: None,
                last_write: None,
                behind: false,
            };
            let shared = connection.state.clone();
            shared.observer.socket(true);
            connection.run(first).await;
            shared.observer.socket(false);
            if let Some(auction) = auction {
                if shared.hub.watchers(auction) == 0 {
                    shared.rendered.forget(auction);
                }
            }
        })
}

/// What a connection reads and writes: axum's [`WebSocket`] when served,
/// any stream and sink of messages in the unit tests.
trait Socket:
    Stream<Item = Result<Message, axum::Error>> + Sink<Message, Error = axum::Error> + Unpin + Send
{
}

impl<T> Socket for T where
    T: Stream<Item = Result<Message, axum::Error>>
        + Sink<Message, Error = axum::Error>
        + Unpin
        + Send
{
}

struct Connection<T = WebSocket> {
    state: AppState,
    viewer: Option<Actor>,
    socket: T,
    /// The auction this socket follows; `None` on a bidder's socket.
    room: Option<Room>,
    /// The last sequence number sent to the client (0 on a bidder's
    /// socket).
    seq: u64,
    /// An event waiting for its write, and until when
    /// ([`WsConfig::write_delay`](crate::WsConfig::write_delay)).
    held: Option<(Event, tokio::time::Instant)>,
    /// When the room's events were last written.
    last_write: Option<tokio::time::Instant>,
    /// The last delivery filled a whole write ([`DELIVERY_BATCH`]): the
    /// events left ready behind it have waited already, so the next one
    /// is not held.
    behind: bool,
}

/// What a room's connection follows.
struct Room {
    auction: AuctionId,
    watch: Watch,
}

/// Whether the connection goes on.
type Flow = Result<(), ()>;

enum Input {
    Delivery(Delivery),
    /// The held event's write is due.
    Write,
    Frame(Option<Result<Message, axum::Error>>),
    Heartbeat,
    Shutdown,
}

impl<T: Socket> Connection<T> {
    async fn run(mut self, first: Option<AuctionView>) {
        let config = self.state.config.ws;
        let mut heartbeat = tokio::time::interval(config.heartbeat);
        heartbeat.tick().await;
        let mut shutdown = self.state.shutdown.clone();
        // One future for the whole connection: made afresh in the loop, it
        // would join and leave the shutdown signal's waiters on every event.
        let stopping = async move {
            // No handle left to trigger it (none taken, or dropped): the
            // host never shuts the sockets down this way.
            if shutdown.wait_for(|stop| *stop).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::pin!(stopping);
        let mut last_heard = Instant::now();
        if let Some(first) = first {
            if self.send_snapshot(first).await.is_err() {
                return;
            }
        }
        loop {
            // While an event is held, the room is not read: the write takes
            // every event ready by then, for one wake-up and one system call.
            let due = self.held.as_ref().map(|(_, due)| *due);
            let input = tokio::select! {
                delivery = next_delivery(self.room.as_mut()), if due.is_none() => {
                    Input::Delivery(delivery)
                }
                () = sleep_until(due) => Input::Write,
                frame = self.socket.next() => Input::Frame(frame),
                _ = heartbeat.tick() => Input::Heartbeat,
                () = &mut stopping => Input::Shutdown,
            };
            let flow = match input {
                Input::Delivery(delivery) => self.hold_or_deliver(delivery).await,
                Input::Write => self.deliver_held().await,
                Input::Frame(frame) => {
                    last_heard = Instant::now();
                    self.receive(frame).await
                }
                Input::Heartbeat if last_heard.elapsed() >= config.idle_timeout => {
                    self.close(CLOSE_IDLE, "idle timeout").await
                }
                Input::Heartbeat => self.write(Message::Ping(Default::default())).await,
                Input::Shutdown => self.close(1001, "server shutting down").await,
            };
            if flow.is_err() {
                break;
            }
        }
    }

    /// Delivers an event now, or holds it until
    /// [`WsConfig::write_delay`](crate::WsConfig::write_delay) has passed
    /// since the last write of events.
    async fn hold_or_deliver(&mut self, delivery: Delivery) -> Flow {
        let delay = self.state.config.ws.write_delay;
        let due = self.last_write.map(|at| at + delay);
        match (delivery, due) {
            (Delivery::Event(event), Some(due))
                if !self.behind && tokio::time::Instant::now() < due =>
            {
                self.held = Some((event, due));
                Ok(())
            }
            (delivery, _) => self.deliver(delivery).await,
        }
    }

    /// Delivers the held event, if any, with those ready after it.
    async fn deliver_held(&mut self) -> Flow {
        match self.held.take() {
            Some((event, _)) => self.deliver(Delivery::Event(event)).await,
            None => Ok(()),
        }
    }

    /// Sends `first` and the deliveries ready after it, up to
    /// [`DELIVERY_BATCH`], then flushes once: a watcher that fell behind
    /// catches up in one write (one system call, not one per event).
    async fn deliver(&mut self, first: Delivery) -> Flow {
        let limit = self.state.config.ws.send_timeout;
        // How many events went out; none counted for a resync.
        let fed = in_time(limit, async {
            let mut next = Some(first);
            let mut fed = 0;
            while let Some(delivery) = next {
                let Delivery::Event(event) = delivery else {
                    // The snapshot's write flushes what was fed before it.
                    return Ok::<_, ()>(None);
                };
                let message = self.event_message(event).ok_or(())?;
                self.socket.feed(message).await.map_err(drop)?;
                fed += 1;
                next = if fed < DELIVERY_BATCH {
                    self.room.as_mut().and_then(|room| room.watch.try_next())
                } else {
                    None
                };
            }
            self.socket.flush().await.map_err(drop)?;
            self.last_write = Some(tokio::time::Instant::now());
            Ok(Some(fed))
        })
        .await?;
        self.behind = fed == Some(DELIVERY_BATCH);
        match fed {
            Some(_) => Ok(()),
            None => self.snapshot().await,
        }
    }

    /// An event's message: the shared rendering when it holds nothing
    /// private for this watcher, its own otherwise.
    fn event_message(&mut self, event: Event) -> Option<Message> {
        self.seq = event.seq;
        let engine = &self.state.engine;
        let render = |event: Event| {
            let server_now = engine.now();
            serde_json::to_string(&ServerMessage::Event { server_now, event }).ok()
        };
        let text = if event.private.is_empty() {
            let rendered = &self.state.rendered;
            rendered.get_or_render(&event, || render(event.clone()))?
        } else {
            render(event)?.into()
        };
        self.state.observer.event_delivered();
        Some(Message::Text(text))
    }

    /// Reloads the room's auction and sends it whole.
    async fn snapshot(&mut self) -> Flow {
        let Some(auction) = self.room.as_ref().map(|room| room.auction) else {
            return Ok(());
        };
        match self
            .state
            .engine
            .auction(auction, self.state.recent_bids())
            .await
        {
            Ok(view) => self.send_snapshot(view).await,
            Err(error) => {
                tracing::warn!(%error, %auction, "snapshot failed");
                self.close(1011, "could not load the auction").await
            }
        }
    }

    /// Sends the whole state and skips the events it already includes.
    async fn send_snapshot(&mut self, view: AuctionView) -> Flow {
        if let Some(room) = &mut self.room {
            room.watch.resume_after(view.auction.bidding.seq);
        }
        self.seq = view.auction.bidding.seq;
        let viewer = self.viewer.as_ref().map(|actor| actor.user);
        let message = ServerMessage::Snapshot {
            seq: view.auction.bidding.seq,
            server_now: self.state.engine.now(),
            ends_at: view.auction.bidding.ends_at,
            auction: AuctionBody::new(&view.auction, viewer),
            bids: view.bids,
        };
        self.send(&message).await
    }

    async fn receive(&mut self, frame: Option<Result<Message, axum::Error>>) -> Flow {
        let text = match frame {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Binary(_))) => {
                return self.close(1003, "send JSON text messages").await
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => return Ok(()),
            // Refused from its header, before its body was read.
            Some(Err(error)) if too_large(&error) => {
                return self.close(1009, "message too big").await
            }
            // Closed by the client, or a broken frame.
            Some(Ok(Message::Close(_)) | Err(_)) | None => return Err(()),
        };
        if text.len() > self.state.config.ws.max_message_bytes {
            return self.close(1009, "message too big").await;
        }
        match serde_json::from_str::<ClientMessage>(&text) {
            Ok(ClientMessage::Ping) => {
                let server_now = self.state.engine.now();
                let seq = self.seq;
                self.send(&ServerMessage::Pong { seq, server_now }).await
            }
            Ok(ClientMessage::Bid {
                auction_id,
                amount,
                max_amount,
                request_id,
            }) => {
                let body = BidRequest { amount, max_amount };
                let room = self.room.as_ref().map(|room| room.auction);
                let result = match bid_target(room, auction_id) {
                    Ok(auction) => {
                        let viewer = self.viewer.as_ref();
                        ws_bid(&self.state, viewer, auction, body, &request_id).await
                    }
                    Err(error) => Err(error),
                };
                let server_now = self.state.engine.now();
                let message = match result {
                    Ok(result) => ServerMessage::BidResult {
                        seq: result.auction.auction.bidding.seq,
                        server_now,
                        request_id,
                        result,
                    },
                    Err(error) => ServerMessage::Error {
                        seq: self.seq,
                        server_now,
                        request_id: Some(request_id),
                        error: error.body().clone(),
                    },
                };
                self.send(&message).await
            }
            Err(error) => {
                let error = ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_message",
                    format!("not a valid message: {error}"),
                );
                let message = ServerMessage::Error {
                    seq: self.seq,
                    server_now: self.state.engine.now(),
                    request_id: None,
                    error: error.body().clone(),
                };
                self.send(&message).await
            }
        }
    }

    async fn send(&mut self, message: &ServerMessage) -> Flow {
        let text = serde_json::to_string(message).map_err(|_| ())?;
        self.write(Message::Text(text.into())).await
    }

    /// Sends `message` after any held event, so the client sees the
    /// events in order before, say, the answer to a bid.
    async fn write(&mut self, message: Message) -> Flow {
        let limit = self.state.config.ws.send_timeout;
        let Some((event, _)) = self.held.take() else {
            return in_time(limit, self.socket.send(message)).await;
        };
        let held = self.event_message(event).ok_or(())?;
        in_time(limit, self.socket.feed(held)).await?;
        in_time(limit, self.socket.send(message)).await?;
        self.last_write = Some(tokio::time::Instant::now());
        Ok(())
    }

    /// Sends a close frame and waits briefly for the client's reply; the
    /// connection ends either way.
    async fn close(&mut self, code: u16, reason: &'static str) -> Flow {
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        };
        if self.write(Message::Close(Some(frame))).await.is_ok() {
            // Dropping the connection at once could reset it before the
            // client has read the close frame (and its code).
            // Whatever the client still sends (the rest of an oversized
            // message) is read and dropped, for the same reason.
            let drain = async { while self.socket.next().await.is_some() {} };
            let _ = tokio::time::timeout(CLOSE_GRACE, drain).await;
        }
        Err(())
    }
}

/// Whether a read failed on a frame or message beyond the socket's limits.
fn too_large(error: &axum::Error) -> bool {
    use tokio_tungstenite::tungstenite::Error;
    let cause = std::error::Error::source(error);
    matches!(
        cause.and_then(|cause| cause.downcast_ref::<Error>()),
        Some(Error::Capacity(_))
    )
}

/// Most events one write sends: bounds the write buffer of a watcher
/// catching up.
const DELIVERY_BATCH: usize = 32;

/// The room's next delivery; never, on a bidder's socket.
async fn next_delivery(room: Option<&mut Room>) -> Delivery {
    match room {
        Some(room) => room.watch.next().await,
        None => std::future::pending().await,
    }
}

/// Fires at `due`; never without one.
async fn sleep_until(due: Option<tokio::time::Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

/// The auction a `bid` message is for: a room's own (which the message
/// may repeat), or the one a bidder's socket message names.
fn bid_target(room: Option<AuctionId>, named: Option<AuctionId>) -> Result<AuctionId, ApiError> {
    let invalid =
        |message: String| ApiError::new(StatusCode::BAD_REQUEST, "invalid_message", message);
    match (room, named) {
        (Some(room), None) => Ok(room),
        (Some(room), Some(named)) if named == room => Ok(room),
        (Some(room), Some(named)) => Err(invalid(format!(
            "this room takes bids on auction {room} only, not {named}"
        ))),
        (None, Some(named)) => Ok(named),
        (None, None) => Err(invalid(
            "a bid on this socket names its auction_id".to_owned(),
        )),
    }
}

/// What `io` gave if it finished in time and well: a client that does not
/// read is dropped, never waited for.
async fn in_time<T, E>(limit: Duration, io: impl Future<Output = Result<T, E>>) -> Result<T, ()> {
    match tokio::time::timeout(limit, io).await {
        Ok(Ok(value)) => Ok(value),
        _ => Err(()),
    }
}

/// A WebSocket bid: the same command as HTTP, keyed by its `request_id`.
async fn ws_bid(
    state: &AppState,
    viewer: Option<&Actor>,
    auction: AuctionId,
    body: BidRequest,
    request_id: &str,
) -> Result<BidBody, ApiError> {
    let me = viewer.ok_or_else(ApiError::unauthorized)?;
    let key = IdempotencyKey::new(request_id).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_id",
            "request_id must be 1 to 255 visible ASCII characters",
        )
    })?;
    let receipt = state.bid(me, auction, body, Some(key)).await?;
    Ok(BidBody::new(&receipt, me.user))
}

#[cfg(test)]
mod tests {
    use super::*;
    use neighborbid_core::PublicEvent;

    fn event(auction: i64, seq: u64) -> Event {
        Event {
            auction_id: AuctionId(auction),
            seq,
            at: chrono::DateTime::UNIX_EPOCH,
            local: false,
            public: vec![PublicEvent::Unsold],
            private: Vec::new(),
        }
    }

    #[test]
    fn each_event_is_rendered_once_for_all_watchers() {
        let rendered = Rendered::default();
        let renders = std::cell::Cell::new(0);
        let render = |event: &Event| {
            let text = rendered.get_or_render(event, || {
                renders.set(renders.get() + 1);
                Some(format!("seq {}", event.seq))
            });
            text.map(|text| text.as_str().to_owned())
        };
        for _watcher in 0..3 {
            assert_eq!(render(&event(1, 1)).as_deref(), Some("seq 1"));
        }
        assert_eq!(render(&event(1, 2)).as_deref(), Some("seq 2"));
        assert_eq!(render(&event(2, 2)).as_deref(), Some("seq 2"));
        assert_eq!(renders.get(), 3, "once per event, not per watcher");
        // Watchers at different points, taking turns: still once each.
        for seq in [3, 4, 3, 5, 4, 3, 5, 4] {
            assert_eq!(render(&event(1, seq)), Some(format!("seq {seq}")));
        }
        assert_eq!(renders.get(), 6, "3, 4 and 5 once each");
        rendered.forget(AuctionId(1));
        render(&event(1, 2));
        assert_eq!(renders.get(), 7, "a forgotten auction renders afresh");
    }

    #[test]
    fn only_the_most_recent_events_are_kept() {
        let rendered = Rendered::default();
        let renders = std::cell::Cell::new(0);
        let render = |seq: u64| {
            rendered.get_or_render(&event(1, seq), || {
                renders.set(renders.get() + 1);
                Some(format!("seq {seq}"))
            })
        };
        let kept = Rendered::KEPT as u64;
        for seq in 1..=kept + 10 {
            render(seq);
        }
        assert_eq!(renders.get(), kept + 10);
        render(11); // the oldest kept
        render(kept + 10);
        assert_eq!(renders.get(), kept + 10, "kept: not rendered again");
        assert_eq!(render(10).as_deref(), Some("seq 10"), "older: rendered");
        render(10);
        assert_eq!(renders.get(), kept + 12, "and not kept");
        let count = rendered.recent.lock().expect("lock")[&AuctionId(1)].len();
        assert_eq!(count, Rendered::KEPT);
    }
}

#[cfg(test)]
mod loop_tests;

public import Tracing
public import TroupeWire

/// The spans Troupe starts, one per hop a call makes.
public enum TroupeSpan {
    /// A host, the CLI or another program asks the sidecar to invoke an actor (server side).
    public static let invoke = "troupe.invoke"
    /// The sidecar runs one turn of an actor on its host (client side of the host invocation).
    public static let actorTurn = "troupe.actor.turn"
    /// A call leaves for the node that owns the actor (client side of the cluster hop).
    public static let clusterForward = "troupe.cluster.forward"
    /// A call forwarded by another node arrives at the owner (server side of the cluster hop).
    public static let clusterServe = "troupe.cluster.serve"
    /// A call leaves over NATS for a sidecar of another ActorSystem (client side of the bridge hop).
    public static let bridgeCall = "troupe.bridge.call"
    /// A call from another ActorSystem arrives over NATS (server side of the bridge hop).
    public static let bridgeServe = "troupe.bridge.serve"
    /// An SDK program (a client, or an action's own calls) sends a call to its sidecar (client side).
    public static let clientInvoke = "troupe.client.invoke"
    /// An SDK host runs an action for the sidecar's turn (server side of the host invocation).
    public static let hostAction = "troupe.host.action"
    /// The sidecar activates an actor for the call that found it inactive: the wait for its old
    /// owner to let go, finding its type and host, and loading its state (with a new fencing token).
    public static let actorActivate = "troupe.actor.activate"
    /// The state a turn returned is stored before the caller is answered (a write-through type),
    /// as a child of the turn.
    public static let stateWrite = "troupe.state.write"
    /// A broadcast is handed to this system's listeners and, from its own system, to the bridge
    /// (producer); in another system, it arrived over NATS (consumer). Each listener's turn is a
    /// child.
    public static let broadcast = "troupe.broadcast"
}

/// The attribute names of Troupe's spans.
public enum TroupeSpanAttribute {
    public static let system = "troupe.system"
    public static let node = "troupe.node"
    public static let actorID = "troupe.actor_id"
    public static let actorType = "troupe.actor_type"
    public static let action = "troupe.action"
    /// `ok`, or the status of the failure (`notFound`, `deadlineExceeded`, …).
    public static let status = "troupe.status"
    /// For a cluster forward: the node the call went to. For a bridge call: the system it went to.
    public static let peer = "troupe.peer"
    /// The channel of a broadcast.
    public static let channel = "troupe.channel"
    /// How many of this system's actor types a broadcast was handed to.
    public static let listeners = "troupe.listeners"
}

/// Starts Troupe's spans on one tracer and carries their context in invocation metadata.
///
/// Each hop continues the trace whose W3C `traceparent` (and `tracestate`) the call's metadata
/// carries, or starts a new trace when it carries none, and then writes its own span's context
/// back into the metadata: whatever the call reaches next (another node, another system, the
/// actor's host) sees this span as its parent. Which headers are read and written is the
/// tracer's propagation (W3C for swift-otel's tracer).
public struct InvocationTracer: Sendable {
    public let tracer: any Tracer
    /// This sidecar's ActorSystem and node, set on every span.
    public let system: String
    public let node: String

    public init(tracer: any Tracer, system: String, node: String) {
        self.tracer = tracer
        self.system = system
        self.node = node
    }

    /// Starts span `name` for a call to `actorID` and makes it the parent of the call's next hop.
    ///
    /// - Parameters:
    ///   - metadata: the call's headers: the parent is read from them and replaced by the new span.
    ///   - actorType: the actor's registered type, when known at this hop.
    /// - Returns: the span; end it with ``Tracing/Span/end(reporting:)`` when the hop is answered.
    public func startSpan(
        _ name: String, kind: SpanKind, metadata: inout [String: String], actorID: String, action: String,
        actorType: String? = nil
    ) -> any Span {
        var parent = InstrumentationContext.topLevel
        tracer.extract(metadata, into: &parent, using: MetadataExtractor())
        let span = tracer.startAnySpan(name, context: parent, ofKind: kind)
        if span.isRecording {
            span.attributes = .troupe(
                system: system, node: node, actorID: actorID, action: action, actorType: actorType)
        }
        tracer.inject(span.context, into: &metadata, using: MetadataInjector())
        return span
    }
}

extension Span {
    /// Records the call's outcome (attribute `troupe.status` and the span status) and ends the span.
    public func end(reporting failure: TroupeError?) {
        if let failure {
            attributes[TroupeSpanAttribute.status] = failure.code.description
            setStatus(SpanStatus(code: .error, message: failure.message))
        } else {
            attributes[TroupeSpanAttribute.status] = "ok"
            setStatus(SpanStatus(code: .ok))
        }
        end()
    }

    /// Ends the span with the outcome of `result`.
    public func end<Success>(reporting result: Result<Success, TroupeError>) {
        switch result {
        case .success: end(reporting: nil)
        case .failure(let error): end(reporting: error)
        }
    }
}

extension SpanAttributes {
    /// The attributes of a Troupe span about one call; `node` is set by sidecars only.
    static func troupe(
        system: String, node: String? = nil, actorID: String, action: String, actorType: String? = nil
    ) -> SpanAttributes {
        var attributes = SpanAttributes()
        attributes[TroupeSpanAttribute.system] = system
        if let node { attributes[TroupeSpanAttribute.node] = node }
        attributes[TroupeSpanAttribute.actorID] = actorID
        attributes[TroupeSpanAttribute.action] = action
        if let actorType { attributes[TroupeSpanAttribute.actorType] = actorType }
        return attributes
    }
}

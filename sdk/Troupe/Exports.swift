// Callers need `TroupeError` and `Endpoint` from the wire module to use the SDK at all.
@_exported public import TroupeWire

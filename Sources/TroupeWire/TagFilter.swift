/// A filter of actors by the tags they set, written `KEY=VALUE` by people: in the admin API's
/// `GET /v1/actors?tag=` and in `troupe actors --tag`.
public enum TagFilter {
    /// The tags an actor must carry, from `KEY=VALUE` entries (the value may contain `=`).
    ///
    /// - Throws: `invalidArgument` for an entry without `=` or with an empty key.
    public static func parse(_ entries: some Sequence<String>) throws(TroupeError) -> [String: String] {
        var tags: [String: String] = [:]
        for entry in entries {
            let parts = entry.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty else {
                throw .invalidArgument("a tag filter is KEY=VALUE, not '\(entry)'")
            }
            tags[String(parts[0])] = String(parts[1])
        }
        return tags
    }
}

import TroupeActors
import TroupeCluster
import TroupeProto

/// What a sidecar tells about itself and its cluster, the same to a host-protocol client
/// (`troupe members`, `troupe actors`) and to the admin HTTP API.
struct SidecarView: Sendable {
    let configuration: SidecarConfiguration
    let directory: ActorDirectory
    let membership: ClusterMembership?

    /// The members of the cluster; a single node lists itself.
    func members() -> WireListMembersResponse {
        var response = WireListMembersResponse()
        guard let membership else {
            var info = WireMemberInfo()
            info.node = configuration.node
            info.status = "up"
            info.actorTypes = directory.registeredTypes.map(\.name)
            info.self_p = true
            response.members = [info]
            return response
        }
        response.members = membership.members.map { member in
            var info = WireMemberInfo()
            info.node = member.node.name
            info.address = member.node.address
            info.incarnation = member.node.uid
            info.status = "\(member.status)"
            info.swimIncarnation = member.incarnation
            info.actorTypes = membership.actorTypes(of: member.node.name)
            info.self_p = member.node.name == configuration.node && member.node.address == membership.address
            return info
        }
        return response
    }

    /// The active actors of this node.
    func localActors(ofType actorType: String, tags: [String: String] = [:], limit: Int) -> WireListActorsResponse {
        var response = WireListActorsResponse()
        (response.actors, response.truncated) = directory.list(actorType: actorType, tags: tags, limit: limit)
        return response
    }

    /// The active actors, in a cluster those of every up member, each with the node it lives on.
    /// Only those with each of `tags` (same value) are listed.
    func actors(ofType actorType: String, tags: [String: String] = [:], limit: Int) async -> WireListActorsResponse {
        guard let membership else { return localActors(ofType: actorType, tags: tags, limit: limit) }
        var response = WireListActorsResponse()
        let nodes = membership.members.filter { $0.status == .up }.map(\.node.name)
        (response.actors, response.truncated, response.unreachableNodes) = await directory.list(
            actorType: actorType, tags: tags, limit: limit, alsoOn: nodes)
        return response
    }
}

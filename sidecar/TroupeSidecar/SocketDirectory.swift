import Foundation
import TroupeWire

/// The Unix socket's permissions: the socket lives in a directory only the sidecar's user can
/// open (0700) and is itself 0600, so the filesystem is the host boundary and no secret is
/// needed on the socket.
///
/// An existing directory is never loosened or tightened: it may be shared (`/tmp`, `/run`, a
/// Kubernetes emptyDir), and changing its mode would lock out or expose everyone else in it.
/// The sidecar refuses to start instead and says which directory to use.
enum SocketDirectory {
    /// Creates the socket's directory with mode 0700 if it does not exist, or checks that the
    /// existing one is a directory (not a symbolic link) owned by this user and closed to group
    /// and others.
    ///
    /// - Throws: `failedPrecondition` naming the directory, its owner and mode.
    static func prepare(forSocket socket: String) throws(TroupeError) {
        let directory = (socket as NSString).deletingLastPathComponent
        let path = directory.isEmpty ? "." : directory
        var status = stat()
        if lstat(path, &status) != 0 {
            guard errno == ENOENT else {
                throw .failedPrecondition(
                    "cannot inspect the socket directory \(path): \(String(cString: strerror(errno)))")
            }
            let parent = (path as NSString).deletingLastPathComponent
            do {
                if !parent.isEmpty {
                    try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
                }
            } catch {
                throw .failedPrecondition("cannot create \(parent) for the socket: \(error.localizedDescription)")
            }
            // mkdir applies the umask, which can only remove bits; chmod makes it exactly 0700.
            guard mkdir(path, 0o700) == 0 || errno == EEXIST, chmod(path, 0o700) == 0 else {
                throw .failedPrecondition(
                    "cannot create the socket directory \(path): \(String(cString: strerror(errno)))")
            }
            guard lstat(path, &status) == 0 else {
                throw .failedPrecondition(
                    "cannot inspect the socket directory \(path): \(String(cString: strerror(errno)))")
            }
        }
        let mode = status.st_mode & 0o7777
        guard status.st_mode & S_IFMT == S_IFDIR else {
            throw .failedPrecondition(
                "the socket directory \(path) is not a directory (a symbolic link is refused too); "
                    + "set socket to a path in a directory the sidecar may create")
        }
        guard status.st_uid == geteuid() else {
            throw .failedPrecondition(
                "the socket directory \(path) belongs to uid \(status.st_uid), not to this sidecar's uid \(geteuid()); "
                    + "set socket to a path in a subdirectory the sidecar creates, such as \(path)/sidecar/\((socket as NSString).lastPathComponent)",
                details: ["directory": path, "mode": String(mode, radix: 8)])
        }
        guard mode & 0o077 == 0 else {
            throw .failedPrecondition(
                "the socket directory \(path) has mode \(String(mode, radix: 8)): group and others may open it; "
                    + "chmod 700 it, or set socket to a path in a subdirectory the sidecar creates with mode 0700",
                details: ["directory": path, "mode": String(mode, radix: 8)])
        }
    }

    /// Where the socket is bound before it is published at `socket`.
    static func staging(for socket: String) -> String { socket + ".new" }

    /// Makes the socket bound at ``staging(for:)`` 0600 and then renames it to `socket`, so the
    /// socket never appears at its path with a wider mode (bind applies only the umask), and a
    /// stale socket there is replaced in one step.
    static func publish(socket: String) throws(TroupeError) {
        let staged = staging(for: socket)
        guard chmod(staged, 0o600) == 0 else {
            throw .failedPrecondition("cannot chmod the socket \(staged) to 0600: \(String(cString: strerror(errno)))")
        }
        guard rename(staged, socket) == 0 else {
            throw .failedPrecondition(
                "cannot move the socket \(staged) to \(socket): \(String(cString: strerror(errno)))")
        }
    }
}

// What every executable shares: one-line errors, the version, stdin/stdout
// frames, progress on stderr.
import ArgumentParser
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public let toolkitVersion = "0.1.0"

/// Prints a one-line message on stderr, prefixed with the tool's name.
public func warn(_ tool: String, _ message: String) { writeStderr("\(tool): \(message)\n") }

/// Diagnostics on stderr. A closed or full stderr loses them but never stops the work (the exit
/// status still tells): no trap, unlike FileHandle's write.
public func writeStderr(_ text: String) { try? TextOutput(fd: 2).write(text) }

extension ParsableCommand {
    /// Runs the command. --help and --version print ArgumentParser's text (a failed write exits 1); every failure
    /// (a bad flag, a broken rule of an option group, a library error) is ONE line `tool: message`
    /// on stderr and exit status 1.
    public static func runTool() {
        let name = configuration.commandName ?? String(describing: Self.self).lowercased()
        do {
            var command = try parseAsRoot()
            if Communicator.launchedSize > 1 && !(command is ShardedCommand) {
                throw DDPMError("\(name) does not share its work among ranks: run it without mpirun (or with -np 1)")
            }
            try command.run()
            if Communicator.launched { try Communicator.world()?.finalize() }
        } catch let e as DDPMError {
            fail(name, e.message)
        } catch let e as CocoaError {
            fail(name, e.localizedDescription)
        } catch {
            let code = exitCode(for: error)
            if code == .success {   // --help, --version: ArgumentParser's text, written checked
                do {
                    try TextOutput(fd: 1).write(fullMessage(for: error) + "\n")
                } catch let e as DDPMError {
                    fail(name, e.message)
                } catch {
                    Glibc.exit(1)
                }
                Glibc.exit(0)
            }
            let line = message(for: error).split(whereSeparator: \.isNewline).first.map(String.init) ?? "invalid arguments"
            fail(name, line.hasPrefix("Error: ") ? String(line.dropFirst(7)) : line)
        }
    }
}

/// The one line of a failed tool, then exit 1. Under mpirun the line names the rank and the whole
/// job is ended (MPI_Abort), so no rank waits for this one.
func fail(_ name: String, _ message: String) -> Never {
    if Communicator.launched, let comm = try? Communicator.world() {
        warn("\(name) (\(comm.name))", message)
        comm.abort(1)
    }
    warn(name, message)
    Glibc.exit(1)
}

/// The schedule a tool uses: `--schedule FILE`, else a schedule frame arriving
/// first on the input stream (consumed), else the default linear schedule.
public func resolveSchedule(path: String?, reader: FrameReader?) throws -> Schedule {
    if let path { return try Schedule.load(path: path) }
    if let reader, let first = try reader.next() {
        if first.kind == "schedule" { return try Schedule(frame: first) }
        reader.pushBack(first)
    }
    return Schedule.standard()
}

/// Progress on stderr: a bar redrawn in place on a terminal, a plain line every
/// few seconds otherwise (logs, CI), nothing with `quiet`.
public final class Progress {
    let label: String
    let total: Int
    let quiet: Bool
    let tty: Bool
    let start = Date()
    var lastPrint = Date.distantPast

    public init(label: String, total: Int, quiet: Bool = false) {
        self.label = label
        self.total = max(total, 1)
        self.quiet = quiet
        self.tty = isatty(2) != 0
    }

    /// Reports `done` of `total` units; `extra` is appended (e.g. "loss 0.031").
    public func update(_ done: Int, extra: String = "", unit: String = "it") {
        guard !quiet else { return }
        let now = Date()
        let finished = done >= total
        guard finished || now.timeIntervalSince(lastPrint) >= (tty ? 0.2 : 5) else { return }
        lastPrint = now
        let elapsed = now.timeIntervalSince(start)
        let rate = elapsed > 0 ? Double(done) / elapsed : 0
        let eta = rate > 0 ? Double(total - done) / rate : 0
        let pct = 100 * Double(done) / Double(total)
        let info = String(format: "%d/%d (%.0f%%) %.1f %@/s, eta %@", done, total, pct, rate, unit, Progress.clock(eta))
            + (extra.isEmpty ? "" : ", " + extra)
        if tty {
            let width = 24
            let filled = Int(Double(width) * Double(done) / Double(total))
            let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
            writeStderr("\r\(label) [\(bar)] \(info)\u{1B}[K" + (finished ? "\n" : ""))
        } else {
            writeStderr("\(label): \(info)\n")
        }
    }

    static func clock(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        return s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60) : String(format: "%d:%02d", s / 60, s % 60)
    }
}

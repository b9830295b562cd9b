// The hang classes of a predictor process (denoise --predictor) and ending denoise: each failing
// run must end within its --timeout plus a second, with status 1 and one line on stderr naming the
// predictor; a denoise ended by SIGTERM, SIGHUP or SIGINT must end its predictor's process group.
// Shell predictors only (no Python).
import Foundation
import XCTest
@testable import Shared

final class PredictorProcessTests: XCTestCase {
    /// A request larger than the predictor's stdin pipe (1 MiB after Pipes.enlarge): 256 x 2048 F32 = 2 MiB.
    let big = ["--shape", "2048", "-n", "256", "--steps", "5"]
    let small = ["--shape", "2", "-n", "2", "--steps", "5"]

    /// Runs denoise with `predictor` and `--timeout 1`; asserts it fails within 2 s with status 1 and
    /// one stderr line naming the predictor and containing `expect`. Returns the seconds it took.
    @discardableResult
    func assertEnds(_ predictor: String, _ args: [String], _ expect: String, timeout: Double = 1,
                    file: StaticString = #filePath, line: UInt = #line) throws -> Double {
        let start = Date()
        let r = try runTool("denoise", args + ["--predictor", predictor, "--timeout", formatG(timeout), "--quiet"])
        let took = Date().timeIntervalSince(start)
        XCTAssertLessThan(took, timeout + 1, "\(predictor): took \(took) s; stderr: \(r.stderr)", file: file, line: line)
        XCTAssertEqual(r.status, 1, "\(predictor) should fail; stderr: \(r.stderr)", file: file, line: line)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, "one line expected: \(r.stderr)", file: file, line: line)
        XCTAssertTrue(r.stderr.hasPrefix("denoise: predictor '\(predictor)'") || r.stderr.hasPrefix("denoise: bad answer from the predictor '\(predictor)'"),
                      "the predictor is not named: \(r.stderr)", file: file, line: line)
        XCTAssertTrue(r.stderr.contains(expect), "'\(expect)' not in: \(r.stderr)", file: file, line: line)
        print("  \(String(format: "%.2f", took)) s  \(predictor)  ->  \(r.stderr.trimmingCharacters(in: .newlines))")
        return took
    }

    /// A file of answer frames for `-n 2 --shape 2` (eps [2, 2]), with the given 'call' metadata (nil: none).
    func answers(_ calls: [String?]) throws -> String {
        let frames: [Frame] = calls.map { call in
            var f = Frame(metadata: ["kind": "eps"])
            if let call { f.metadata["call"] = call }
            f["eps"] = Tensor([Float](repeating: 0.1, count: 4), shape: [2, 2])
            return f
        }
        let path = temporaryDirectory().appendingPathComponent("answers.st").path
        try Frame.save(frames, path: path)
        return path
    }

    func testPredictorThatNeverReadsItsRequest() throws {
        // denoise blocks writing the 2 MiB request; the watchdog ends the write.
        try assertEnds("sleep 30", big, "did not read request 1 within 1 s")
        try assertEnds("exec sleep 30", big, "did not read request 1 within 1 s")
        try assertEnds("head -c 1000 > /dev/null; sleep 30", big, "did not read request 1 within 1 s")
        // One that reads, never answers (the request fits in the pipe: only the read waits).
        try assertEnds("cat > /dev/null", small, "gave no answer within 1 s at call 1")
        // One that stops reading for good: its stdin closed, still running.
        try assertEnds("exec 0<&-; sleep 30", big, "stopped reading its input at call 1")
    }

    func testPredictorThatSendsPartOfAFrameAndStalls() throws {
        // Half the length word, then a length word and part of the header, then all but the last
        // bytes of a valid answer.
        try assertEnds("head -c 100 > /dev/null; printf abcd; sleep 30", small, "sent only part of its answer to call 1 within 1 s")
        try assertEnds("head -c 100 > /dev/null; printf '\\100\\0\\0\\0\\0\\0\\0\\0{\"eps'; sleep 30", small, "sent only part of its answer to call 1")
        let one = try answers([nil])
        let size = try FileManager.default.attributesOfItem(atPath: one)[.size] as! Int
        try assertEnds("head -c 100 > /dev/null; head -c \(size - 4) '\(one)'; sleep 30", small, "sent only part of its answer to call 1")
    }

    func testPredictorWhoseOutputClosesWhileItRuns() throws {
        try assertEnds("exec 1>&-; sleep 30", small, "closed its output without answering call 1")
        try assertEnds("head -c 1 > /dev/null; exec > /dev/null; sleep 30", small, "closed its output without answering call 1")
        // The same after a good first answer.
        let one = try answers([nil])
        try assertEnds("head -c 1 > /dev/null; cat '\(one)'; exec 1>&-; sleep 30", small, "closed its output without answering call 2")
        // A subshell closes its stdout while the shell that holds it waits: no answer, the timeout.
        try assertEnds("(exec 1>&-; sleep 30); true", small, "gave no answer within 1 s at call 1")
    }

    func testPredictorThatAnswersTwice() throws {
        // Two answers at once: the second is waiting when call 2 is about to be asked.
        let two = try answers([nil, nil])
        try assertEnds("head -c 1 > /dev/null; cat '\(two)'; sleep 30", small, "sent a frame nobody asked for after answering call 1")
        let twoEchoed = try answers(["1", "1"])
        try assertEnds("head -c 1 > /dev/null; cat '\(twoEchoed)'; sleep 30", small, "sent a frame nobody asked for after answering call 1")
        // The second comes late, after call 2 was asked: the 'call' it echoes gives it away.
        let one = try answers(["1"])
        try assertEnds("head -c 1 > /dev/null; cat '\(one)'; sleep 0.3; cat '\(one)'; sleep 30", small, "answered call 1 when call 2 was asked")
        // Two answers before any request: the first is taken for call 1's, the second is extra.
        try assertEnds("cat '\(two)'; sleep 30", small, "sent a frame nobody asked for after answering call 1")
        // Two answers to the LAST request (one step: no later request reveals it): caught when the
        // predictor exits at the end of the run, with or without the 'call' echo.
        let oneStep = ["--shape", "2", "-n", "2", "--steps", "1"]
        try assertEnds("head -c 1 > /dev/null; cat '\(two)'", oneStep, "sent a frame nobody asked for after answering call 1")
        try assertEnds("head -c 1 > /dev/null; cat '\(twoEchoed)'", oneStep, "sent a frame nobody asked for after answering call 1")
        // The same predictor answering once is fine.
        let r = try runTool("denoise", oneStep + ["--predictor", "head -c 1 > /dev/null; cat '\(one)'", "--timeout", "1", "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
    }

    func testPredictorAnswerForAnotherCall() throws {
        let seven = try answers(["7"])
        try assertEnds("head -c 1 > /dev/null; cat '\(seven)'; sleep 30", small, "answered call 7 when call 1 was asked")
        // An answer for another batch size is caught by its shape.
        var three = Frame(metadata: ["kind": "eps"])
        three["eps"] = Tensor([Float](repeating: 0, count: 6), shape: [3, 2])
        let path = temporaryDirectory().appendingPathComponent("three.st").path
        try three.save(path: path)
        try assertEnds("head -c 1 > /dev/null; cat '\(path)'; sleep 30", small, "shape [3, 2], expected [2, 2]")
    }

    func testGuideEchoesTheCallNumber() throws {
        // A well-behaved predictor passes the checks and echoes each request's call.
        var request = Frame(metadata: ["kind": "predict", "call": "41"])
        request["x"] = Tensor([Float](repeating: 0, count: 4), shape: [2, 2])
        request["t"] = Tensor([Int64(5), 7], shape: [2])
        var second = request
        second.metadata["call"] = "42"
        let r = try runTool("guide", ["--analytic", "gaussian mu=0 sigma=1"], stdin: try encode([request, second]))
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try decode(r.stdout).map { $0.metadata["call"] }, ["41", "42"])
    }

    // MARK: ending denoise ends its predictor

    /// Starts denoise (its signal dispositions at their defaults, stdout and stderr to files) with
    /// a predictor that writes the pid to watch into `pidfile`; returns denoise's pid and that pid.
    /// `ignoring`: signals ignored when denoise starts (as nohup or a background job has them).
    func startDenoise(predictor: String, pidfile: String, args: [String], ignoring: [String] = []) throws -> (pid_t, pid_t) {
        let dir = temporaryDirectory().path
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, dir + "/out.st", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, dir + "/err.txt", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for s in [SIGTERM, SIGHUP, SIGINT, SIGPIPE] { sigaddset(&defaults, s) }
        var mask = sigset_t()
        sigemptyset(&mask)
        posix_spawnattr_setsigdefault(&attr, &defaults)
        posix_spawnattr_setsigmask(&attr, &mask)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
        // The shell sets the ignored signals and becomes denoise (exec keeps them ignored).
        let traps = ignoring.map { "trap '' \($0); " }.joined()
        let words = ["/bin/sh", "-c", traps + "exec \"$0\" \"$@\"", toolPath("denoise")] + args + ["--predictor", predictor, "--quiet"]
        let argv: [UnsafeMutablePointer<CChar>?] = words.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, words[0], &actions, &attr, argv, environ)
        XCTAssertEqual(rc, 0, "cannot start denoise")
        // Wait for the predictor to say who it is.
        let end = Date().addingTimeInterval(20)
        while Date() < end {
            if let text = try? String(contentsOfFile: pidfile, encoding: .utf8), text.hasSuffix("\n"),
               let p = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)) {
                return (pid, p)
            }
            usleep(10_000)
        }
        kill(pid, SIGKILL)
        throw DDPMError("the predictor did not start: \((try? String(contentsOfFile: dir + "/err.txt", encoding: .utf8)) ?? "")")
    }

    /// Whether `pid` is gone (no such process, or a zombie about to be reaped by init).
    func gone(_ pid: pid_t) -> Bool {
        if kill(pid, 0) != 0 && errno == ESRCH { return true }
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return true }
        // pid (comm) state ...: the state follows the last ')'.
        guard let close = stat.lastIndex(of: ")") else { return false }
        let state = stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).prefix(1)
        return state == "Z" || state == "X"
    }

    func assertSignalEndsPredictor(_ sig: Int32, _ makePredictor: (String) -> String, args: [String], within: Double,
                                   file: StaticString = #filePath, line: UInt = #line) throws {
        let pidfile = temporaryDirectory().appendingPathComponent("pid").path
        let predictor = makePredictor(pidfile)
        let (denoise, watched) = try startDenoise(predictor: predictor, pidfile: pidfile, args: args)
        usleep(100_000)   // let it be well into its exchange
        let start = Date()
        kill(denoise, sig)
        var status: Int32 = 0
        XCTAssertEqual(waitpid(denoise, &status, 0), denoise, file: file, line: line)
        // It ends as the signal ends it (the handler re-raises it).
        XCTAssertEqual(status & 0x7f, sig, "denoise ended with wait status \(status)", file: file, line: line)
        while !gone(watched) && Date().timeIntervalSince(start) < within + 5 { usleep(10_000) }
        let took = Date().timeIntervalSince(start)
        XCTAssertTrue(gone(watched), "\(predictor): pid \(watched) still runs after signal \(sig)", file: file, line: line)
        XCTAssertLessThan(took, within, "\(predictor): signal \(sig) took \(took) s", file: file, line: line)
        print("  \(String(format: "%.2f", took)) s  signal \(sig)  \(predictor)")
        if !gone(watched) { kill(watched, SIGKILL) }
    }

    func testEndingDenoiseEndsItsPredictor() throws {
        let wait = small + ["--timeout", "100"]
        for sig in [SIGTERM, SIGHUP, SIGINT] {
            // A predictor that never answers.
            try assertSignalEndsPredictor(sig, { "echo $$ > '\($0)'; exec sleep 1000" }, args: wait, within: 2)
            // A child of the predictor's shell (in its process group) is ended too.
            try assertSignalEndsPredictor(sig, { "sleep 1000 & echo $! > '\($0)'; wait" }, args: wait, within: 2)
            // One that ignores SIGTERM is killed after a second.
            try assertSignalEndsPredictor(sig, { "trap '' TERM; echo $$ > '\($0)'; exec sleep 1000" }, args: wait, within: 3)
        }
        // A working predictor (guide), mid-sampling.
        let g = toolPath("guide")
        for sig in [SIGTERM, SIGHUP, SIGINT] {
            try assertSignalEndsPredictor(sig, { "echo $$ > '\($0)'; exec \(g) --analytic 'gaussian mu=0 sigma=1'" },
                                          args: ["--shape", "64", "-n", "100000", "--steps", "1000", "--timeout", "100"], within: 2)
        }
    }

    func testIgnoredSignalsStayIgnored() throws {
        // Under nohup (SIGHUP ignored) or as a background job (SIGINT ignored), denoise must not be
        // ended by that signal: it installs no handler over an ignored signal.
        for (sig, name) in [(SIGHUP, "HUP"), (SIGINT, "INT")] {
            let pidfile = temporaryDirectory().appendingPathComponent("pid").path
            let (denoise, watched) = try startDenoise(predictor: "echo $$ > '\(pidfile)'; exec sleep 1000", pidfile: pidfile,
                                                      args: small + ["--timeout", "100"], ignoring: [name])
            usleep(100_000)   // past its setting up of handlers
            kill(denoise, sig)
            usleep(300_000)
            var status: Int32 = 0
            XCTAssertEqual(waitpid(denoise, &status, WNOHANG), 0, "denoise ended by the ignored SIG\(name)")
            XCTAssertFalse(gone(watched), "the predictor ended by the ignored SIG\(name)")
            kill(denoise, SIGTERM)
            XCTAssertEqual(waitpid(denoise, &status, 0), denoise)
            XCTAssertEqual(status & 0x7f, SIGTERM)
            let end = Date().addingTimeInterval(3)
            while !gone(watched) && Date() < end { usleep(10_000) }
            XCTAssertTrue(gone(watched), "the predictor outlived denoise")
            if !gone(watched) { kill(watched, SIGKILL) }
        }
    }

    func testPredictorStartsWithSIGPIPEAtItsDefault() throws {
        // denoise ignores SIGPIPE (a dead predictor must give a write error); its predictor must
        // not inherit that, or the processes of a predictor pipeline get write errors instead.
        let file = temporaryDirectory().appendingPathComponent("sigign").path
        let r = try runTool("denoise", small + ["--predictor", "grep SigIgn /proc/$$/status > '\(file)'; exec \(toolPath("guide")) --analytic 'gaussian mu=0 sigma=1'", "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let line = try String(contentsOfFile: file, encoding: .utf8)
        let mask = UInt64(line.split(separator: ":")[1].trimmingCharacters(in: .whitespacesAndNewlines), radix: 16)!
        XCTAssertEqual(mask & (1 << (UInt64(SIGPIPE) - 1)), 0, "SIGPIPE ignored in the predictor: \(line)")
    }
}

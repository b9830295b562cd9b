// noise: the forward process q(x_t | x_0) over a frame stream.
import ArgumentParser
import Shared

@main
struct NoiseTool: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "noise",
        abstract: "Noise images or vectors with the forward process: x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps.",
        discussion: """
        Reads frames holding 'x' (F32, or F64 converted; [N, ...]) on stdin. Writes the same frames \
        with 'x' replaced by x_t, plus 't' (I64 [N]) and 'eps' (F32, shape of x); other tensors \
        (e.g. 'y') and metadata pass through, and metadata gains tool, seed, t, schedule, T, noise_index.

        Timesteps are 0-based: 0 .. T-1, T-1 the noisiest. '-t' takes one t or a comma list; with \
        a list every input frame gives one output frame per t, and sample i carries the same eps at \
        every t. '--random-t' draws t uniformly per sample (training pairs).

        Schedule: --schedule FILE, else a schedule frame arriving first on stdin (consumed, not \
        passed on), else the default linear schedule (T = 1000, beta 1e-4 .. 0.02).

        Reproducible: eps of a sample depends only on --seed and the sample's index in the stream \
        (counted across frames), not on frame sizes or --threads.

        Examples:
          tensor toy moons -n 1000 --seed 1 | noise -t 999 --seed 2 | tensor info
          { schedule --cosine; cat x0.st; } | noise -t 0,250,500,750,999 > strip.st
          noise --random-t --seed 7 --schedule cosine.st < x0.st > pairs.st
        """,
        version: toolkitVersion)

    @Option(name: .customShort("t"), help: "Timestep, or comma-separated timesteps (0 .. T-1).")
    var timestep: String?
    @Flag(help: "Draw t uniformly from 0 .. T-1 for each sample.") var randomT = false
    @Option(help: "Random seed (eps and random t).") var seed: UInt64 = 0
    @Option(help: "Schedule file (a frame written by 'schedule').") var schedule: String?
    @Option(help: "Worker threads (default: all cores; results do not depend on it).") var threads: Int?

    func run() throws {
        // Checked here, not in validate(), so that the error is one line like every other.
        if randomT == (timestep != nil) { throw DDPMError("give exactly one of -t T (e.g. -t 500) and --random-t") }
        if let threads, threads < 1 { throw DDPMError("--threads must be at least 1, got \(threads)") }
        var options = NoiseOptions(seed: seed, timesteps: randomT ? .random : .list(timestep!), schedulePath: schedule)
        if let threads { options.threads = threads }
        let writer = try FrameWriter()
        try runNoise(options, reader: FrameReader(), writer: writer)
    }

    static func main() { runTool() }
}

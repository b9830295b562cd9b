// denoise: the reverse process. Options -> a PredictorSetup and SamplerOptions -> the jobs of
// Shared/Jobs (SampleJob, BoundJob, ScoreJob); all the maths is in Shared/Diffusion.
import ArgumentParser
import Foundation
import Shared

@main
struct DenoiseTool: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "denoise", abstract: "Sample with the reverse diffusion process (DDPM ancestral sampling or DDIM).",
        discussion: Help.root, version: toolkitVersion, subcommands: [Sample.self, Bound.self, Score.self, Invert.self, Inpaint.self], defaultSubcommand: Sample.self)
    static func main() { runTool() }
}

/// What every denoise command reads besides the predictor.
struct InputArguments: ParsableArguments {
    @Option(help: "Shape of one sample: D or C,H,W (with input frames: taken from them when omitted).") var shape: SampleShape?
    @Option(help: "Schedule file (default: a leading schedule frame on stdin, else linear T = 1000).") var schedule: String?
    @Option(help: "Random seed.") var seed: UInt64 = 0
    @Option(help: "Samples per batch (per output frame). Does not change the samples.") var batch: Int = 256
    @Option(help: "Index of the first sample (for shards: -n 500 --offset 500).") var offset: Int = 0
    @Flag(help: "No progress on stderr.") var quiet = false
    @OptionGroup var threads: ThreadArguments

    func validate() throws {
        guard batch >= 1 else { throw ValidationError("--batch must be >= 1") }
        guard offset >= 0 else { throw ValidationError("--offset must be >= 0") }
    }

    func open(_ spec: PredictorSpec, reader: FrameReader?) throws -> (PredictorSetup, [Int]) {
        threads.apply()
        return try PredictorSetup.open(spec: spec, schedulePath: schedule, sampleShape: shape?.dims, reader: reader)
    }
}

struct Sample: ParsableCommand, ShardedCommand {
    static let configuration = CommandConfiguration(commandName: "sample", abstract: "Draw samples (the default command).", discussion: Help.sample)
    @OptionGroup var predictor: PredictorArguments
    @OptionGroup var sampler: SamplerArguments
    @OptionGroup var input: InputArguments
    @Option(name: .shortAndLong, help: "Number of samples.") var n: Int = 16
    @Option(help: "Read x_t frames from stdin and denoise from timestep T (SDEdit).") var from: Int?
    @Option(help: "Also write the trajectory (x_t and x0_pred) every K steps.") var every: Int = 0
    @Flag(help: "Print the variational bound of the data frames on stdin instead (as `denoise nll`).") var nll = false
    @Flag(help: "Write the score of the input frames instead (as `denoise score`).") var score = false
    @OptionGroup var bound: BoundArguments

    func validate() throws {
        guard n >= 0 else { throw ValidationError("-n must be >= 0") }
        guard every >= 0 else { throw ValidationError("--every must be >= 0") }
        if input.shape == nil && predictor.model == nil && from == nil && !nll && !score {
            throw ValidationError("--shape D or C,H,W is required with --predictor or --analytic")
        }
        if from == nil && !nll && !score && predictor.label == nil {
            if predictor.classifier != nil { throw ValidationError("--classifier needs --label (or 'y' in --from input frames)") }
            if predictor.guidance != nil { throw ValidationError("--guidance needs --label (or 'y' in --from input frames)") }
        }
        if nll && (from != nil || score) { throw ValidationError("--nll excludes --from and --score") }
        if bound.given && !nll { throw ValidationError("--terms, --nll-steps and --decoder apply to --nll") }
        if nll && predictor.guided { throw ValidationError("--nll is the bound of the model itself: it excludes --guidance and --classifier") }
    }

    func run() throws {
        if Communicator.launchedSize > 1 && (nll || score || from != nil) {
            throw DDPMError("only sampling from noise is shared among ranks (not --from, --nll, --score): run it with one process")
        }
        if nll { return try Bound.run(predictor, sampler.variance, input, bound) }
        if score { return try Score.run(predictor, input, from) }
        let reader = from != nil ? FrameReader() : nil
        let (setup, shape) = try input.open(predictor.spec(answersV: sampler.variance == .learned), reader: reader)
        defer { setup.close() }
        let options = sampler.options(from: from, defaults: SampleJob.defaults(setup: setup, kind: sampler.sampler))
        var job = SampleJob(setup: setup, options: options, sampleShape: shape)
        job.count = n; job.seed = input.seed; job.batch = input.batch; job.offset = input.offset
        job.every = every; job.quiet = input.quiet
        if let comm = try Communicator.world(), comm.size > 1 {
            // Under mpirun: whole batches per rank, gathered by rank 0 into the one-process stream.
            var print = Fingerprint()
            for a in CommandLine.arguments.dropFirst() { print.add(a) }
            print.add(setup.schedule.beta.map { Float($0) })
            if let m = setup.model { print.add(Array(m.network.store.values)) }
            try comm.agree("denoise's flags, schedule or model", fingerprint: print.value)
            let share = Shards.range(count: n, batch: input.batch, rank: comm.rank, size: comm.size)
            let out = try GatheredOutput(comm: comm)
            job.count = share.count; job.offset = input.offset + share.lowerBound
            job.quiet = input.quiet || comm.rank != 0
            try job.run(reader: nil, writer: out.writer)
            try out.finish()
            return try setup.finish()
        }
        try job.run(reader: reader, writer: try FrameWriter())
        try setup.finish()
    }
}

struct Bound: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "nll", abstract: "Print the variational bound (bits/dim) of data frames.", discussion: Help.nll)
    @OptionGroup var predictor: PredictorArguments
    @Option(help: "Variance of p(x_{t-1} | x_t): beta, posterior or learned.") var variance: VarianceKind?
    @OptionGroup var input: InputArguments
    @OptionGroup var bound: BoundArguments

    func validate() throws { if predictor.guided { throw ValidationError("the bound is that of the model itself: it excludes --guidance and --classifier") } }
    func run() throws { try Bound.run(predictor, variance, input, bound) }

    static func run(_ p: PredictorArguments, _ variance: VarianceKind?, _ input: InputArguments, _ b: BoundArguments) throws {
        if isatty(0) != 0 { throw DDPMError("the bound reads data frames on stdin (e.g. denoise nll --model M < test.st)") }
        let reader = FrameReader()
        let (setup, shape) = try input.open(p.spec(answersV: variance == .learned), reader: reader)
        defer { setup.close() }
        var job = BoundJob(setup: setup, sampleShape: shape)
        job.variance = variance ?? SampleJob.defaultVariance(setup: setup, kind: .ddpm)
        job.decoder = b.decoder; job.strata = b.nllSteps; job.terms = b.terms
        job.seed = input.seed; job.batch = input.batch; job.offset = input.offset; job.quiet = input.quiet
        try job.run(reader: reader, output: TextOutput())
        try setup.finish()
    }
}

struct Score: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "score", abstract: "Write the score of input frames.", discussion: Help.score)
    @OptionGroup var predictor: PredictorArguments
    @OptionGroup var input: InputArguments
    @Option(help: "Timestep of every sample (default: the frames' 't').") var from: Int?

    func run() throws { try Score.run(predictor, input, from) }

    static func run(_ p: PredictorArguments, _ input: InputArguments, _ from: Int?) throws {
        let reader = FrameReader()
        let (setup, shape) = try input.open(p.spec(), reader: reader)
        defer { setup.close() }
        var job = ScoreJob(setup: setup, sampleShape: shape)
        job.at = from; job.seed = input.seed
        try job.run(reader: reader, writer: try FrameWriter())
        try setup.finish()
    }
}

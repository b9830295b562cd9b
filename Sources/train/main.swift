// train: fits a noise-prediction network (eps, x0 or v target) to a data stream and writes a model file.
import ArgumentParser
import Foundation
import Shared

@main
struct TrainTool: ParsableCommand, ShardedCommand {
    static let unet = UNetConfig.defaults(for: [1, 28, 28]), mlp = MLPConfig(dim: 2)
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a DDPM noise-prediction network (U-Net or MLP) on a data stream.",
        discussion: """
        Reads frames with 'x' (F32 [N,C,H,W] images in [-1,1] or [N,D] vectors) and optionally \
        'y' (integer class labels [N]) from stdin or --data, all held in memory. A schedule frame \
        first on the stream (or --schedule FILE) sets the noise schedule; default linear T=1000.
        Writes ONE model frame (kind 'model': ema.<param> and raw.<param> F32, schedule.beta F64, \
        metadata arch.*, loss, prediction, weighting, classes, data_shape, steps, seed; docs/FORMAT.md) to -o FILE or stdout.
        The network predicts eps (default), x0 or v = sqrt(abar) eps - sqrt(1-abar) x0 (--prediction);         the loss is the MSE on that target, optionally Min-SNR weighted (--weighting min-snr --snr-gamma G).
        Checkpoints (--checkpoint FILE --every K) add the AdamW moments and the step (kind \
        'checkpoint'); --resume FILE continues a run bit-identically: the network, schedule and \
        training settings come from the checkpoint (flags may repeat its values, not change \
        them), --steps is the TOTAL number of steps.
        Under mpirun -np N (data-parallel, docs/PARALLEL.md) each step's --batch is shared among \
        the ranks, their gradients summed; every rank reads --data FILE; rank 0 alone writes the \
        model, checkpoints, log and progress. A checkpoint resumes with any number of ranks.
        Defaults: images -> --arch unet (\(unet.channels) channels, mults \(unet.mults.map(String.init).joined(separator: ",")), \
        res blocks per level \(unet.resBlocks), attention \(unet.attnResolutions.isEmpty ? "only in the mid block" : "at \(unet.attnResolutions)"), \
        dropout \(unet.dropout)), vectors -> --arch mlp (width \(mlp.width), depth \(mlp.depth)); \
        --lr \(TrainConfig.unetLearningRate) (unet) or \(TrainConfig.otherLearningRate) (mlp).

        Examples:
          tensor toy swissroll -n 10000 | train --steps 5000 -o roll.safetensors
          tensor toy swissroll -n 10000 | train --steps 5000 --prediction v --weighting min-snr -o roll-v.safetensors
          tensor from-idx train-images.gz train-labels.gz > mnist.st
          train --data mnist.st --steps 20000 --checkpoint ck.st --every 1000 -o mnist.safetensors
          train --data mnist.st --steps 40000 --checkpoint ck.st --every 1000 -o mnist.safetensors --resume ck.st
          train --data mnist.st --classifier --steps 5000 -o classifier.safetensors
          mpirun -np 4 train --data mnist.st --steps 20000 --checkpoint ck.st -o mnist.safetensors
        """,
        version: toolkitVersion)

    @Option(help: "Read the data from FILE instead of stdin.") var data: String?
    @OptionGroup(title: "Network") var network: NetworkOptions
    @OptionGroup(title: "Training") var training: TrainingOptions
    @Option(name: [.short, .customLong("output")], help: "Write the model to FILE (default stdout).") var output: String?
    @Option(help: "Write a checkpoint to FILE every --every steps and at the end.") var checkpoint: String?
    @Option(help: "Checkpoint period in steps (default \(TrainJob.defaultCheckpointEvery)).") var every: Int?
    @Option(help: "Continue from a checkpoint FILE.") var resume: String?
    @Option(help: "Append 'step,loss' CSV lines to FILE.") var log: String?
    @Flag(help: "No progress on stderr.") var quiet = false
    @OptionGroup var threads: ThreadArguments

    func validate() throws {
        if let every, every <= 0 { throw ValidationError("--every must be positive, got \(every)") }
        if every != nil && checkpoint == nil { throw ValidationError("--every needs --checkpoint FILE") }
        if Communicator.launchedSize > 1 && data == nil {
            throw ValidationError("under mpirun every rank reads the data: give --data FILE (stdin reaches rank 0 only)")
        }
    }

    func run() throws {
        let comm = try Communicator.world().flatMap { $0.size > 1 ? $0 : nil }
        threads.apply()
        // Everything is checked before any training starts.
        try checkTrainPaths(data: data, output: output, others: [("--checkpoint", checkpoint), ("--log", log)], terminals: comm == nil)
        let reader = try data.map { try FrameReader(path: $0) } ?? FrameReader()
        let job = try TrainSetup(network: network, training: training)
            .job(reader: reader, resume: resume, checkpoint: checkpoint, every: every, log: log, quiet: quiet, communicator: comm)
        if let comm {
            // Same flags, data, schedule, settings and starting state on every rank.
            var print = Fingerprint()
            for a in CommandLine.arguments.dropFirst() { print.add(a) }
            withUnsafeBytes(of: job.trainer.fingerprint()) { print.add($0) }
            try comm.agree("train's flags, data, schedule or starting model", fingerprint: print.value)
        }
        let model = try job.run()
        guard job.writes else { return }
        if let output { try model.save(path: output) } else { try FrameWriter(allowTerminal: comm != nil).write(model) }
    }

    static func main() { runTool() }
}

// guide: classifier-free guidance as a stream filter, or an analytic predictor
// process for `denoise --predictor`. The formulas are in Shared/Diffusion/Guidance.swift.
import ArgumentParser
import Shared

@main
struct GuideTool: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "guide",
        abstract: "Mix conditional and unconditional eps (classifier-free guidance), or serve a model or analytic predictor (plain, guided, classifier-guided).",
        discussion: """
        Filter mode (--scale W): reads frames with 'eps_cond' and 'eps_uncond' (F32, same shape [N,...]) and writes \
        them with 'eps' = eps_uncond + W (eps_cond - eps_uncond) instead (other tensors and schedule frames pass \
        through). W = 1: conditional, W = 0: unconditional; Ho & Salimans' w is W - 1. --rescale PHI applies Lin et \
        al.'s guidance rescale per sample.

        Predictor mode (--model M, --cond M1 --uncond M2, or --analytic SPEC): reads request frames with 'x', 't' \
        (and 'y') and answers each with a frame holding 'eps' (and 'v' for a learned variance): a trained model's \
        prediction, or the exact one of a Gaussian or Gaussian mixture. With --scale W the answer is the classifier-free \
        guided eps~ = eps(x,t,null) + W (eps(x,t,y) - eps(x,t,null)) (a model: ONE batched forward over the label and \
        the null class; --cond/--uncond: the two models); with --pair, 'eps_cond' and 'eps_uncond'. Labels come from \
        the requests' 'y' or --label. With --classifier C (train --classifier) and --scale S: classifier guidance, \
        eps~ = eps(x,t) - sqrt(1 - abar_t) S grad_x log p_phi(y | x_t, t) (eps is the model's unconditional \
        prediction: its null class when it is conditional).

        Examples:
          model-answering-pairs | guide --scale 3 --rescale 0.7
          denoise --predictor 'guide --analytic "gaussian mu=0.5 sigma=0.3"' --shape 2 -n 100 > s.st
          denoise --predictor 'guide --analytic "mixture mu=-1,1 sigma=0.2" --scale 2' --label 1 --shape 2 > s.st
          denoise --predictor 'guide --model mnist.safetensors --scale 3' --label 7 --shape 1,28,28 -n 16 > sevens.st
          denoise --predictor 'guide --cond c.safetensors --uncond u.safetensors --scale 2 --label 1' --shape 2 > s.st
          denoise --predictor 'guide --model u.safetensors --classifier clf.safetensors --scale 4 --label 3' --shape 2 > s.st
        """,
        version: toolkitVersion)

    @Option(help: "Guidance scale W (weight on the conditional eps).") var scale: Double?
    @Option(help: "Guidance rescale phi in [0, 1] (Lin et al. 2024, eq. 15-16).") var rescale: Double = 0
    @Option(help: "Serve an analytic predictor: 'gaussian mu=M sigma=S [v=V] [null=M,S]' or 'mixture mu=M1,M2 sigma=S1,S2 [weight=W1,W2] [v=V] [null=M,S]'.")
    var analytic: String?
    @Flag(help: "Answer 'eps_cond' and 'eps_uncond' instead of 'eps'.") var pair = false
    @Option(help: "Schedule file for --analytic (default linear T = 1000).") var schedule: String?
    @Option(help: "Serve a trained model file (from train).") var model: String?
    @Option(help: "Conditional model file of a separate pair (with --uncond).") var cond: String?
    @Option(help: "Unconditional model file of a separate pair (with --cond).") var uncond: String?
    @Option(help: "Noise-aware classifier file (train --classifier) for classifier guidance with --model and --scale.") var classifier: String?
    @Option(help: "Class label for every request (else the requests' 'y').") var label: Int?
    @Option(help: "Weights of the model files: ema or raw.") var weights: WeightChoice = .ema

    func validate() throws {
        guard rescale >= 0 && rescale <= 1 else { throw ValidationError("--rescale must lie in [0, 1], got \(rescale)") }
        if rescale != 0 && scale == nil { throw ValidationError("--rescale needs --scale") }
        if let scale, !scale.isFinite { throw ValidationError("--scale must be finite") }
        let sources = [analytic != nil, model != nil, cond != nil || uncond != nil].filter { $0 }.count
        guard sources <= 1 else { throw ValidationError("give one of --model FILE, --cond FILE --uncond FILE or --analytic SPEC") }
        if (cond == nil) != (uncond == nil) { throw ValidationError("--cond and --uncond go together (the two models of a guided pair)") }
        if let label, label < 0 { throw ValidationError("--label must be >= 0") }
        if classifier != nil && model == nil { throw ValidationError("--classifier needs --model (the noise predictor it guides)") }
        if classifier != nil && scale == nil { throw ValidationError("--classifier needs --scale S (the classifier guidance scale)") }
        if classifier != nil && (pair || rescale != 0) { throw ValidationError("--pair and --rescale apply to classifier-free guidance, not to --classifier") }
        if pair && scale != nil { throw ValidationError("--pair and --scale exclude each other") }
        if sources == 0 {
            if label != nil { throw ValidationError("--label applies to predictor mode (--model, --cond/--uncond, --analytic)") }
            if scale == nil { throw ValidationError("give --scale W (filter mode) or --model FILE / --analytic SPEC (predictor mode)") }
            if pair { throw ValidationError("--pair applies to predictor mode") }
        }
        if schedule != nil && analytic == nil { throw ValidationError("--schedule applies to --analytic (a model file holds its schedule)") }
        if weights != .ema && analytic != nil { throw ValidationError("--weights applies to model files") }
    }

    func run() throws {
        let reader = FrameReader(), writer = try FrameWriter()
        let source: PredictorSource? = model.map { .model($0) } ?? analytic.map { .analytic($0) }
            ?? cond.map { .pair(cond: $0, uncond: uncond!) }
        guard let source else { return try GuideFilter(scale: scale!, rescale: rescale).run(reader: reader, writer: writer) }
        var spec = PredictorSpec(source: source)
        spec.weights = weights
        spec.label = label
        if let classifier { spec.guidance = .classifier(path: classifier, scale: scale!) }
        else if let scale { spec.guidance = .classifierFree(scale: scale, rescale: rescale) }
        let setup = try PredictorSetup(spec: spec, schedule: try schedule.map(Schedule.load), sampleShape: nil)
        var server = PredictorServer(setup: setup)
        server.pair = pair
        try server.run(reader: reader, writer: writer)
    }

    static func main() { runTool() }
}

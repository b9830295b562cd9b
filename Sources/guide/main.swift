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
    @Flag(help: "With --analytic: answer 'eps_cond' and 'eps_uncond' instead of 'eps'.") var pair = false
    @Option(help: "Schedule file for --analytic (default linear T = 1000).") var schedule: String?
    @Option(help: "Serve a trained model file (from train).") var model: String?
    @Option(help: "Conditional model file of a separate pair (with --uncond).") var cond: String?
    @Option(help: "Unconditional model file of a separate pair (with --cond).") var uncond: String?
    @Option(help: "Noise-aware classifier file (train --classifier) for classifier guidance with --model and --scale.") var classifier: String?
    @Option(help: "Class label for every request (else the requests' 'y').") var label: Int?
    @Option(help: "Weights of the model files: ema (default) or raw.") var weights: String = "ema"

    func run() throws {
        guard rescale >= 0 && rescale <= 1 else { throw DDPMError("--rescale must lie in [0, 1], got \(rescale)") }
        if rescale != 0 && scale == nil { throw DDPMError("--rescale needs --scale") }
        if let scale, !scale.isFinite { throw DDPMError("--scale must be finite") }
        let sources = [analytic != nil, model != nil, cond != nil || uncond != nil].filter { $0 }.count
        guard sources <= 1 else { throw DDPMError("give one of --model FILE, --cond FILE --uncond FILE or --analytic SPEC") }
        if (cond == nil) != (uncond == nil) { throw DDPMError("--cond and --uncond go together (the two models of a guided pair)") }
        guard let weightChoice = WeightChoice(rawValue: weights) else { throw DDPMError("--weights must be ema or raw, got '\(weights)'") }
        if let label, label < 0 { throw DDPMError("--label must be >= 0") }
        if classifier != nil && model == nil { throw DDPMError("--classifier needs --model (the noise predictor it guides)") }
        if classifier != nil && scale == nil { throw DDPMError("--classifier needs --scale S (the classifier guidance scale)") }
        if classifier != nil && (pair || rescale != 0) { throw DDPMError("--pair and --rescale apply to classifier-free guidance, not to --classifier") }
        if sources == 1 {
            try serve(weights: weightChoice)
            return
        }
        if label != nil { throw DDPMError("--label applies to predictor mode (--model, --cond/--uncond, --analytic)") }
        let reader = FrameReader()
        let writer = try FrameWriter()
        var frameNo = 0
        guard let scale else { throw DDPMError("give --scale W (filter mode) or --model FILE / --analytic SPEC (predictor mode)") }
        if pair { throw DDPMError("--pair applies to predictor mode") }
        while var f = try reader.next() {
            frameNo += 1
            if f.kind == "schedule" { try writer.write(f); continue }
            let c = try f.require("eps_cond"), u = try f.require("eps_uncond")
            guard c.shape == u.shape, c.shape.count >= 2, c.shape[0] > 0 else {
                throw DDPMError("frame \(frameNo): 'eps_cond' \(c.shape) and 'eps_uncond' \(u.shape) must have the same shape [N,...]")
            }
            let cf = c.floats
            let eps = Guidance.mix(cond: cf, uncond: u.floats, scale: scale, rescale: rescale, sampleSize: cf.count / c.shape[0])
            f["eps_cond"] = nil
            f["eps_uncond"] = nil
            f["eps"] = Tensor(eps, shape: c.shape)
            f.metadata["guidance"] = "\(scale)"
            if rescale != 0 { f.metadata["guidance_rescale"] = "\(rescale)" }
            try writer.write(f)
        }
    }

    /// Predictor mode: answer request frames ('x', 't', 'y') with 'eps' (and 'v'), 'eps_cond'/'eps_uncond' (--pair),
    /// the classifier-free guided eps (--scale) or the classifier-guided eps (--classifier).
    func serve(weights: WeightChoice) throws {
        if pair && scale != nil { throw DDPMError("--pair and --scale exclude each other") }
        var base: EpsPredictor
        var guided: EpsPredictor? = nil
        let sched: Schedule
        if let analytic {
            sched = try schedule.map(Schedule.load) ?? Schedule.standard()
            base = try GaussianMixturePredictor.parse(analytic, schedule: sched, sampleShape: [])
        } else {
            if schedule != nil { throw DDPMError("--schedule applies to --analytic (a model file holds its schedule)") }
            if let model {
                base = try ModelPredictor(model: try ModelFile.load(path: model, weights: weights), path: model)
            } else {
                base = try SeparateModelsPredictor(cond: try ModelPredictor(model: try ModelFile.load(path: cond!, weights: weights), path: cond!),
                                                   uncond: try ModelPredictor(model: try ModelFile.load(path: uncond!, weights: weights), path: uncond!))
            }
            sched = (base as? ModelPredictor)?.schedule ?? (base as! SeparateModelsPredictor).cond.schedule
            let classes = (base as? ModelPredictor)?.classes ?? (base as! SeparateModelsPredictor).cond.classes
            if let label, classes > 0, label >= classes { throw DDPMError("--label \(label) outside the model's classes 0 ... \(classes - 1)") }
            if let label, classes == 0, classifier == nil { throw DDPMError("--label \(label): the model is unconditional (trained without labels)") }
            if (pair || scale != nil) && classifier == nil && classes == 0 {
                throw DDPMError("classifier-free guidance needs a class-conditional model (trained with labels); \(model ?? cond!) is unconditional")
            }
        }
        if let classifier {
            let c = try ClassifierGradient(model: try ModelFile.load(path: classifier, weights: weights), path: classifier)
            guard c.schedule.beta == sched.beta else { throw DDPMError("\(classifier) was trained with another schedule than the model") }
            if let mp = base as? ModelPredictor, c.network.inputShape != mp.sampleShape {
                throw DDPMError("the classifier's input shape \(c.network.inputShape) differs from the model's \(mp.sampleShape)")
            }
            if let label, label >= c.classes { throw DDPMError("--label \(label) outside the classifier's classes 0 ... \(c.classes - 1)") }
            guided = ClassifierGuided(base, schedule: sched, scale: scale!, gradient: { try c.gradient(x: $0, t: $1, y: $2) })
        } else if let scale {
            guided = ClassifierFreeGuided(base, scale: scale, rescale: rescale)
        }
        let reader = FrameReader()
        let writer = try FrameWriter()
        var frameNo = 0
        var meta = ["kind": "eps", "tool": "guide", "predictor": (guided ?? base).describe]
        if let scale { meta["guidance"] = "\(scale)"; meta["guidance_kind"] = classifier == nil ? "classifier-free" : "classifier" }
        if rescale != 0 { meta["guidance_rescale"] = "\(rescale)" }
        if let classifier { meta["classifier"] = classifier }
        while let f = try reader.next() {
            frameNo += 1
            if f.kind == "schedule" {
                // A leading schedule frame (e.g. from denoise) must match the predictor's.
                let s = try Schedule(frame: f)
                guard s.beta == sched.beta else { throw DDPMError("frame \(frameNo): the schedule frame (T = \(s.T)) differs from the predictor's schedule (T = \(sched.T))") }
                continue
            }
            let x = try f.require("x")
            guard x.shape.count >= 2, x.shape[0] > 0 else { throw DDPMError("frame \(frameNo): 'x' must be [N,...] with N > 0, got \(x.shape)") }
            let n = x.shape[0]
            // The analytic predictor takes its sample shape from the requests (the guidance rescale is per sample).
            if let g = base as? GaussianMixturePredictor { g.sampleShape = Array(x.shape.dropFirst()) }
            if !base.sampleShape.isEmpty, Array(x.shape.dropFirst()) != base.sampleShape {
                throw DDPMError("frame \(frameNo): 'x' has shape \(x.shape), the model expects [N,\(base.sampleShape.map(String.init).joined(separator: ","))]")
            }
            let t = try f.require("t").integers().map { Int($0) }
            guard t.count == n else { throw DDPMError("frame \(frameNo): 't' has \(t.count) values for \(n) samples") }
            if let bad = t.first(where: { $0 < 0 || $0 >= sched.T }) { throw DDPMError("frame \(frameNo): t = \(bad) outside 0 ... \(sched.T - 1)") }
            var y = try f["y"].map { try $0.integers().map { Int($0) } }
            if let label { y = Array(repeating: label, count: n) }
            if let y, y.count != n { throw DDPMError("frame \(frameNo): 'y' has \(y.count) values for \(n) samples") }
            if let y, let bad = y.first(where: { $0 < 0 }) { throw DDPMError("frame \(frameNo): label \(bad) is negative") }
            var out = Frame(metadata: meta)
            let xs = x.floats
            if pair {
                guard let y else { throw DDPMError("frame \(frameNo): --pair needs labels ('y' in the requests or --label)") }
                let (c, u) = try (base as? PairPredictor)?.predictPair(x: xs, t: t, y: y)
                    ?? (base.checkedPredict(x: xs, t: t, y: y), base.checkedPredict(x: xs, t: t, y: nil))
                out["eps_cond"] = Tensor(c.eps, shape: x.shape)
                out["eps_uncond"] = Tensor(u.eps, shape: x.shape)
                if let v = c.v { out["v"] = Tensor(v, shape: x.shape) }
            } else {
                if guided != nil && y == nil { throw DDPMError("frame \(frameNo): guidance needs labels ('y' in the requests or --label)") }
                let a = try (guided ?? base).checkedPredict(x: xs, t: t, y: y)
                out["eps"] = Tensor(a.eps, shape: x.shape)
                if let v = a.v { out["v"] = Tensor(v, shape: x.shape) }
            }
            try writer.write(out)
        }
    }

    static func main() { runTool() }
}

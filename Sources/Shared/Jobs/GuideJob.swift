// `guide`: classifier-free guidance as a stream filter (frames with eps_cond and eps_uncond in,
// the mixed eps out), or a predictor served over the stream protocol for `denoise --predictor`
// (request frames with x, t, y in; answers with eps (and v), or the pair eps_cond / eps_uncond).
// A model of x0- or v-prediction is answered as 'v_pred' (docs/FORMAT.md section 6).

public struct GuideFilter {
    public let scale: Double
    public let rescale: Double
    public init(scale: Double, rescale: Double) { self.scale = scale; self.rescale = rescale }

    public func run(reader: FrameReader, writer: FrameWriter) throws {
        var frameNo = 0
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
}

public struct PredictorServer {
    public let setup: PredictorSetup
    /// Answer 'eps_cond' and 'eps_uncond' instead of 'eps'.
    public var pair = false
    public init(setup: PredictorSetup) { self.setup = setup }

    public func run(reader: FrameReader, writer: FrameWriter) throws {
        let sched = setup.schedule
        let base = setup.base
        var meta = ["kind": "eps", "tool": "guide", "predictor": setup.predictor.describe]
        switch setup.spec.guidance {
        case .classifierFree(let w, let phi)?:
            meta["guidance"] = "\(w)"; meta["guidance_kind"] = "classifier-free"
            if phi != 0 { meta["guidance_rescale"] = "\(phi)" }
        case .classifier(let path, let s)?:
            meta["guidance"] = "\(s)"; meta["guidance_kind"] = "classifier"; meta["classifier"] = path
        case .combined(let w, let phi, let path, let s)?:
            meta["guidance"] = "\(w)"; meta["guidance_kind"] = "classifier-free + classifier"
            if phi != 0 { meta["guidance_rescale"] = "\(phi)" }
            meta["classifier"] = path; meta["classifier_scale"] = "\(s)"
        case nil: break
        }
        var rules = BatchRules(sampleShape: base.sampleShape.isEmpty ? nil : base.sampleShape, timesteps: true, T: sched.T)
        rules.ranks = Set(1...8)
        rules.readLabels = setup.spec.label == nil
        var frameNo = 0
        while let f = try reader.next() {
            frameNo += 1
            if f.kind == "schedule" {
                // A leading schedule frame (e.g. from denoise) must match the predictor's.
                let s = try Schedule(frame: f)
                guard s.beta == sched.beta else { throw DDPMError("frame \(frameNo): the schedule frame (T = \(s.T)) differs from the predictor's schedule (T = \(sched.T))") }
                continue
            }
            let request = try Batch(frame: f, index: frameNo, rules: rules)
            let n = request.count, shape = [n] + request.sampleShape
            // The analytic predictor takes its sample shape from the requests (the guidance rescale is per sample).
            if let g = base as? GaussianMixturePredictor { g.sampleShape = request.sampleShape }
            let y = setup.spec.label.map { Array(repeating: $0, count: n) } ?? request.y
            var out = Frame(metadata: meta)
            if let call = f.metadata["call"] { out.metadata["call"] = call }   // the request this answers
            if pair {
                guard let y else { throw DDPMError("frame \(frameNo): the pair needs labels ('y' in the requests or a label)") }
                let (c, u) = try (base as? PairPredictor)?.predictPair(x: request.x, t: request.t!, y: y)
                    ?? (base.checkedPredict(x: request.x, t: request.t!, y: y), base.checkedPredict(x: request.x, t: request.t!, y: nil))
                out["eps_cond"] = Tensor(c.eps, shape: shape)
                out["eps_uncond"] = Tensor(u.eps, shape: shape)
                if let v = c.v { out["v"] = Tensor(v, shape: shape) }
            } else {
                if setup.needsLabels && y == nil { throw DDPMError("frame \(frameNo): guidance needs labels ('y' in the requests or a label)") }
                let a = try setup.predictor.checkedPredict(x: request.x, t: request.t!, y: y)
                if let x0 = a.x0 {
                    // x0- or v-prediction: the answer is v_pred = sqrt(abar) eps - sqrt(1 - abar) x0 (defined at
                    // every abar, unlike eps alone at abar = 0; Parameterization.swift).
                    let d = request.x.count / max(n, 1), t = request.t!
                    var v = [Float](repeating: 0, count: x0.count)
                    for i in 0..<v.count {
                        v[i] = Float(Parameterization.output(eps: Double(a.eps[i]), x0: Double(x0[i]), alphaBar: sched.alphaBar[t[i / d]], type: .v))
                    }
                    out["v_pred"] = Tensor(v, shape: shape)
                } else {
                    out["eps"] = Tensor(a.eps, shape: shape)
                }
                if let v = a.v { out["v"] = Tensor(v, shape: shape) }
            }
            try writer.write(out)
        }
    }
}

// The frames the sampling jobs write (docs/FORMAT.md, section 3): 'batch' and 'trajectory' frames
// of n samples, tensors in the order x, x0_pred, t, y.

extension Frame {
    /// A frame of `kind` with the job's metadata and n = x.count / prod(sampleShape) samples: 'x',
    /// then 'x0_pred', 't' (the same timestep for every sample) and 'y' (I64) when given.
    static func samples(_ kind: String, metadata: [String: String], x: [Float], sampleShape: [Int],
                        x0: [Float]? = nil, t: Int? = nil, y: [Int]?) -> Frame {
        let n = x.count / max(1, sampleShape.reduce(1, *))
        var f = Frame(metadata: metadata)
        f.kind = kind
        f["x"] = Tensor(x, shape: [n] + sampleShape)
        if let x0 { f["x0_pred"] = Tensor(x0, shape: [n] + sampleShape) }
        if let t { f["t"] = Tensor([Int64](repeating: Int64(t), count: n), shape: [n]) }
        if let y { f["y"] = Tensor(y.map { Int64($0) }, shape: [n]) }
        return f
    }
}

// The x_0 data frames that `denoise invert` and `denoise inpaint` read: schedule frames skipped,
// each frame validated once for the predictor (shape, labels), with the labels its samples get.

extension PredictorSetup {
    /// Calls `body(batch, labels, frame number)` for every data frame of `reader`; returns how many.
    func eachDataFrame(_ reader: FrameReader, sampleShape: [Int], _ body: (Batch, [Int]?, Int) throws -> Void) throws -> Int {
        var rules = self.rules(sampleShape: sampleShape)
        rules.timesteps = false
        var frameNo = 0
        while let f = try reader.next() {
            if f.kind == "schedule" { continue }
            frameNo += 1
            let input = try Batch(frame: f, index: frameNo, rules: rules)
            try body(input, try labels(frameLabels: input.y, count: input.count, frame: frameNo), frameNo)
        }
        return frameNo
    }
}

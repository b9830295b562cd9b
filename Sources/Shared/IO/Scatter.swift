// A scatter plot of 2-D points as an RGB image, no fonts: one square panel per
// point set side by side, all sharing one view [-R, R]^2, a light grey frame
// around each panel and light axis lines through the origin.

public struct ScatterPlot {
    public let size: Int
    public let range: Double
    public let panels: Int
    public let width: Int, height: Int
    public private(set) var pixels: [UInt8]   // RGB, white background

    /// Point colours per panel (cycled): blue, orange, green, red.
    static let colours: [(UInt8, UInt8, UInt8)] = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40)]
    static let gap = 8
    /// The panel sizes allowed, in pixels.
    public static let sizes = 16...8192

    public init(panels: Int, size: Int, range: Double) throws {
        guard panels >= 1 else { throw DDPMError("scatter needs at least one input") }
        guard ScatterPlot.sizes.contains(size) else { throw DDPMError("a scatter panel must be 16 ... 8192 pixels (got \(size))") }
        guard range > 0, range.isFinite else { throw DDPMError("the view's half-width must be positive (got \(range))") }
        self.size = size; self.range = range; self.panels = panels
        width = panels * size + (panels - 1) * ScatterPlot.gap
        height = size
        pixels = [UInt8](repeating: 255, count: width * height * 3)
        for p in 0..<panels { drawFrame(panel: p) }
    }

    /// The pixel column/row of a point in the panel (nil when outside the view).
    /// Maps [-R, R] onto the panel's inner area, y upwards.
    public func pixel(_ x: Double, _ y: Double) -> (Int, Int)? {
        let inner = Double(size - 3)
        let px = 1 + (x + range) / (2 * range) * inner
        let py = 1 + (range - y) / (2 * range) * inner
        guard px.isFinite, py.isFinite, px >= 1, py >= 1, px <= 1 + inner, py <= 1 + inner else { return nil }
        return (Int(px.rounded()), Int(py.rounded()))
    }

    mutating func set(_ panel: Int, _ x: Int, _ y: Int, _ c: (UInt8, UInt8, UInt8), alpha: Double = 1) {
        guard x >= 0, x < size, y >= 0, y < size else { return }
        let i = (y * width + panel * (size + ScatterPlot.gap) + x) * 3
        func mix(_ old: UInt8, _ new: UInt8) -> UInt8 { UInt8((Double(old) * (1 - alpha) + Double(new) * alpha).rounded()) }
        pixels[i] = mix(pixels[i], c.0); pixels[i + 1] = mix(pixels[i + 1], c.1); pixels[i + 2] = mix(pixels[i + 2], c.2)
    }

    mutating func drawFrame(panel: Int) {
        let frame: (UInt8, UInt8, UInt8) = (170, 170, 170), axis: (UInt8, UInt8, UInt8) = (225, 225, 225)
        if let (ox, oy) = pixel(0, 0) {
            for k in 0..<size { set(panel, ox, k, axis); set(panel, k, oy, axis) }
        }
        for k in 0..<size {
            set(panel, k, 0, frame); set(panel, k, size - 1, frame)
            set(panel, 0, k, frame); set(panel, size - 1, k, frame)
        }
    }

    /// Plots points (x, y pairs) in a panel: each a 2x2 dot blended at 60 %, so dense regions darken.
    public mutating func plot(panel: Int, points: [Float]) -> (drawn: Int, outside: Int) {
        let c = ScatterPlot.colours[panel % ScatterPlot.colours.count]
        var drawn = 0, outside = 0
        for i in 0..<(points.count / 2) {
            guard let (px, py) = pixel(Double(points[2 * i]), Double(points[2 * i + 1])) else { outside += 1; continue }
            drawn += 1
            for dy in 0..<2 { for dx in 0..<2 { set(panel, px + dx, py + dy, c, alpha: 0.6) } }
        }
        return (drawn, outside)
    }

    public func write(path: String) throws {
        try PNG.write8(path: path, width: width, height: height, channels: 3, pixels: pixels)
    }

    /// Writes the plot as a PNG file, or its bytes to stdout.
    public func write(to output: BinaryOutput) throws {
        guard output == .stdout else { return try write(path: output.name) }
        try output.write(PNG.encode8(width: width, height: height, channels: 3, pixels: pixels))
    }
}

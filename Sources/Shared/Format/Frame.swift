// A frame: named tensors in order plus string metadata. One frame is one
// complete safetensors record; a stream is frames back to back (docs/FORMAT.md).

public struct Frame: Sendable {
    /// `__metadata__`: string keys to string values. `kind` says what the frame is.
    public var metadata: [String: String]
    /// Tensor names in the order they are written.
    public private(set) var names: [String]
    private var table: [String: Tensor]

    public init(metadata: [String: String] = [:]) {
        self.metadata = metadata
        self.names = []
        self.table = [:]
    }

    public var kind: String? {
        get { metadata["kind"] }
        set { metadata["kind"] = newValue }
    }

    /// Get, add (at the end), replace (in place) or remove (with nil) a tensor.
    public subscript(name: String) -> Tensor? {
        get { table[name] }
        set {
            if let t = newValue {
                if table[name] == nil { names.append(name) }
                table[name] = t
            } else if table.removeValue(forKey: name) != nil {
                names.removeAll { $0 == name }
            }
        }
    }

    public var tensors: [(name: String, tensor: Tensor)] { names.map { ($0, table[$0]!) } }

    /// The tensor called `name`, or an error naming what is missing.
    public func require(_ name: String) throws -> Tensor {
        guard let t = table[name] else {
            throw DDPMError("no tensor '\(name)' in the frame (it has: \(names.listedForMessage()))")
        }
        return t
    }
}

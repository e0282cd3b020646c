"""Reads the Go struct layout of the Kubernetes API types out of a kubectl binary.

The protobuf schema (k8s-pb) cannot tell a Go pointer field (`*int32`, explicit zero is
meaningful) from a plain one (`int32` + `omitempty`, zero means unset), nor which fields
are `json:",inline"`. kubectl embeds Go's runtime type information for every API type
it can decode, struct tags included, so we read it from there: for each struct type,
its fields with their `json:"…"`/`protobuf:"…"` tags and whether the field is a pointer.

Only ELF amd64 binaries of Go >= 1.20 (abi.Type layout) are supported; the layout is
checked as we go and the script fails loudly rather than guessing.
"""

import struct

KIND_PTR, KIND_SLICE, KIND_MAP, KIND_STRUCT, KIND_ARRAY = 22, 23, 21, 25, 17
TYPE_HEADER = 48  # sizeof(abi.Type) on 64-bit targets


class GoBinary:
    def __init__(self, path):
        self.data = open(path, "rb").read()
        if self.data[:4] != b"\x7fELF" or self.data[4] != 2:
            raise SystemExit(f"{path}: not a 64-bit ELF file")
        self.sections = self._sections()
        if ".typelink" not in self.sections:
            raise SystemExit(f"{path}: no .typelink section (not a Go binary?)")
        # Type name and typelink offsets are relative to `runtime.types`, which the Go
        # linker places at the start of .rodata.
        self.types_base = self.sections[".rodata"][0]

    def _sections(self):
        d = self.data
        shoff = struct.unpack_from("<Q", d, 0x28)[0]
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", d, 0x3A)
        raw = []
        for i in range(shnum):
            name, _typ, _flags, addr, off, size = struct.unpack_from("<IIQQQQ", d, shoff + i * shentsize)
            raw.append((name, addr, off, size))
        strtab = raw[shstrndx][2]
        out = {}
        for name, addr, off, size in raw:
            end = d.index(b"\0", strtab + name)
            out[d[strtab + name:end].decode()] = (addr, off, size)
        return out

    def off(self, va):
        for name, (addr, off, size) in self.sections.items():
            if addr and addr <= va < addr + size and name not in (".bss", ".noptrbss"):
                return off + (va - addr)
        raise ValueError(f"address {va:#x} is in no file-backed section")

    def u64(self, va):
        return struct.unpack_from("<Q", self.data, self.off(va))[0]

    def _varint(self, o):
        v, shift = 0, 0
        while True:
            b = self.data[o]
            o += 1
            v |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                return v, o

    def name(self, va):
        """Decodes an abi.Name: flags byte, varint length, bytes, optional varint-length tag."""
        o = self.off(va)
        flags = self.data[o]
        n, o = self._varint(o + 1)
        name = self.data[o:o + n].decode()
        tag = ""
        if flags & 2:
            tn, o2 = self._varint(o + n)
            tag = self.data[o2:o2 + tn].decode()
        return name, tag

    def kind(self, t):
        return self.data[self.off(t) + 23] & 0x1F

    def type_name(self, t):
        o = self.off(t)
        tflag = self.data[o + 20]
        str_off = struct.unpack_from("<i", self.data, o + 40)[0]
        n, _ = self.name(self.types_base + str_off)
        return n[1:] if tflag & 2 else n  # TFlagExtraStar

    def pkg_path(self, struct_type):
        """Package path of a named struct type, from its UncommonType (after StructType)."""
        o = self.off(struct_type)
        if not self.data[o + 20] & 1:  # TFlagUncommon
            return None
        po = struct.unpack_from("<i", self.data, o + TYPE_HEADER + 32)[0]
        return self.name(self.types_base + po)[0] if po else ""

    def structs(self):
        """Every struct type reachable from the typelinks: {(pkgpath, name): [field, …]}."""
        addr, off, size = self.sections[".typelink"]
        offs = struct.unpack_from(f"<{size // 4}i", self.data, off)
        stack = [self.types_base + x for x in offs]
        seen, out = set(), {}
        while stack:
            t = stack.pop()
            if t in seen:
                continue
            seen.add(t)
            k = self.kind(t)
            if k in (KIND_PTR, KIND_SLICE, KIND_ARRAY):
                stack.append(self.u64(t + TYPE_HEADER))
            elif k == KIND_MAP:
                stack.append(self.u64(t + TYPE_HEADER))
                stack.append(self.u64(t + TYPE_HEADER + 8))
            elif k == KIND_STRUCT:
                fields_ptr, n = self.u64(t + TYPE_HEADER + 8), self.u64(t + TYPE_HEADER + 16)
                fields = []
                for i in range(n):
                    fname, tag = self.name(self.u64(fields_ptr + 24 * i))
                    ft = self.u64(fields_ptr + 24 * i + 8)
                    fields.append({"name": fname, "tag": tag, "type": self.type_name(ft),
                                   "pointer": self.kind(ft) == KIND_PTR})
                    stack.append(ft)
                pkg = self.pkg_path(t)
                if pkg:
                    out[(pkg, self.type_name(t).split(".")[-1])] = fields
        return out


def parse_tag(tag, key):
    """Value of `key:"…"` in a Go struct tag, or None."""
    needle = key + ':"'
    i = tag.find(needle)
    if i < 0 or (i > 0 and tag[i - 1] != " "):
        return None
    j = tag.index('"', i + len(needle))
    return tag[i + len(needle):j]


def api_fields(path):
    """{(pkgpath, TypeName): {proto tag: {json, omitempty, inline, pointer}}} for k8s.io types."""
    out = {}
    for (pkg, name), fields in GoBinary(path).structs().items():
        if not pkg.startswith("k8s.io/"):
            continue
        by_tag = {}
        for f in fields:
            pb = parse_tag(f["tag"], "protobuf")
            js = parse_tag(f["tag"], "json")
            if pb is None or js is None:
                continue
            parts = pb.split(",")
            opts = js.split(",")
            by_tag[int(parts[1])] = {
                "json": opts[0],
                "omitempty": "omitempty" in opts[1:],
                "inline": "inline" in opts[1:],
                "pointer": f["pointer"],
                "go_type": f["type"],
            }
        if by_tag:
            out[(pkg, name)] = by_tag
    return out


if __name__ == "__main__":
    import sys

    info = api_fields(sys.argv[1] if len(sys.argv) > 1 else "/usr/bin/kubectl")
    print(len(info), "types")
    for tag, f in sorted(info[("k8s.io/api/apps/v1", "DeploymentSpec")].items()):
        print(tag, f)

package main

import (
	"runtime/debug"
	"strings"
)

// version describes the build, from what the Go toolchain recorded in the
// binary: the main module's version ("(devel)" for a plain go build), the
// commit it was built from and whether the tree had uncommitted changes
// (when built inside a git checkout with VCS stamping on), and the Go version.
func version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown (no build information in the binary)"
	}
	return versionOf(info)
}

func versionOf(info *debug.BuildInfo) string {
	parts := []string{info.Main.Version}
	if parts[0] == "" {
		parts[0] = "(unknown)"
	}
	var revision, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			revision = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if revision != "" {
		parts = append(parts, "revision "+revision)
		if modified == "true" {
			parts = append(parts, "dirty")
		}
	}
	if info.GoVersion != "" {
		parts = append(parts, info.GoVersion)
	}
	return strings.Join(parts, ", ")
}

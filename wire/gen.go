// Package wire holds Hush's network messages (docs/protocol.md §9):
// protobuf definitions in hush.proto and the code generated from them.
package wire

//go:generate go run github.com/bufbuild/buf/cmd/buf@v1.75.0 generate

// A peer for the RPC interoperability tests, built from the Go libraries Consul uses
// (yamux, net-rpc-msgpackrpc, go-msgpack) as a Consul agent's pool and server use them.
//
//	go_peer client ADDR CALLS   dial ADDR as Consul's ConnPool does and make CALLS concurrent
//	                            calls plus a large one and a failing one; print one JSON result
//	go_peer server              serve Test.Echo / Test.Fail on a free 127.0.0.1 port; print
//	                            "LISTEN host:port", then serve until killed
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/rpc"
	"os"
	"reflect"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-msgpack/codec"
	msgpackrpc "github.com/hashicorp/net-rpc-msgpackrpc"
	"github.com/hashicorp/yamux"
)

const rpcConsul, rpcMultiplexV2 = 0, 4

// consul's structs.MsgpackHandle
var handle = &codec.MsgpackHandle{RawToString: true, WriteExt: true}

func init() {
	handle.MapType = reflect.TypeOf(map[string]interface{}{})
}

type EchoArgs struct {
	Datacenter string
	Key        string
	Value      []byte
	Seq        int
}

type Test struct{}

func (t *Test) Echo(args *EchoArgs, reply *EchoArgs) error {
	*reply = *args
	return nil
}

func (t *Test) Fail(args *EchoArgs, reply *EchoArgs) error {
	return errors.New("No cluster leader")
}

type result struct {
	OK      int      `json:"ok"`
	Errors  []string `json:"errors"`
	Big     bool     `json:"big"`
	FailErr string   `json:"fail_error"`
	PingOK  bool     `json:"ping_ok"`
	Streams int      `json:"streams"`
}

func client(addr string, calls int) error {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return err
	}
	if _, err := conn.Write([]byte{rpcMultiplexV2}); err != nil {
		return err
	}
	conf := yamux.DefaultConfig()
	conf.LogOutput = os.Stderr
	session, err := yamux.Client(conn, conf)
	if err != nil {
		return err
	}
	defer session.Close()

	call := func(method string, args *EchoArgs, reply *EchoArgs) error {
		stream, err := session.Open()
		if err != nil {
			return err
		}
		defer stream.Close()
		cc := msgpackrpc.NewCodecFromHandle(true, true, stream, handle)
		return msgpackrpc.CallWithCodec(cc, method, args, reply)
	}

	var res result
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := 0; i < calls; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			args := &EchoArgs{Datacenter: "dc1", Key: "k" + strconv.Itoa(i), Value: []byte{0, 255, byte(i)}, Seq: i}
			var reply EchoArgs
			err := call("Test.Echo", args, &reply)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				res.Errors = append(res.Errors, err.Error())
			case reply.Key != args.Key || !bytes.Equal(reply.Value, args.Value) || reply.Seq != i:
				res.Errors = append(res.Errors, fmt.Sprintf("bad reply %+v", reply))
			default:
				res.OK++
			}
		}(i)
	}
	wg.Wait()

	big := make([]byte, 3*1024*1024+7)
	for i := range big {
		big[i] = byte(i % 251)
	}
	var bigReply EchoArgs
	if err := call("Test.Echo", &EchoArgs{Key: "big", Value: big}, &bigReply); err != nil {
		res.Errors = append(res.Errors, "big: "+err.Error())
	} else {
		res.Big = bytes.Equal(bigReply.Value, big)
	}
	var failReply EchoArgs
	if err := call("Test.Fail", &EchoArgs{}, &failReply); err != nil {
		res.FailErr = err.Error()
	}
	_, err = session.Ping()
	res.PingOK = err == nil
	res.Streams = session.NumStreams()
	return json.NewEncoder(os.Stdout).Encode(res)
}

func serveCodec(conn io.ReadWriteCloser, srv *rpc.Server) {
	defer conn.Close()
	cc := msgpackrpc.NewCodecFromHandle(true, true, conn, handle)
	for {
		if err := srv.ServeRequest(cc); err != nil {
			return
		}
	}
}

func server() error {
	srv := rpc.NewServer()
	if err := srv.Register(&Test{}); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Printf("LISTEN %s\n", ln.Addr().String())
	os.Stdout.Sync()
	for {
		conn, err := ln.Accept()
		if err != nil {
			return err
		}
		go func(conn net.Conn) {
			buf := make([]byte, 1)
			if _, err := io.ReadFull(conn, buf); err != nil {
				conn.Close()
				return
			}
			switch buf[0] {
			case rpcConsul:
				serveCodec(conn, srv)
			case rpcMultiplexV2:
				conf := yamux.DefaultConfig()
				conf.LogOutput = os.Stderr
				session, _ := yamux.Server(conn, conf)
				for {
					sub, err := session.Accept()
					if err != nil {
						return
					}
					go serveCodec(sub, srv)
				}
			default:
				conn.Close()
			}
		}(conn)
	}
}

func main() {
	var err error
	switch {
	case len(os.Args) == 4 && os.Args[1] == "client":
		calls, convErr := strconv.Atoi(os.Args[3])
		if convErr != nil {
			err = convErr
			break
		}
		err = client(os.Args[2], calls)
	case len(os.Args) == 2 && os.Args[1] == "server":
		err = server()
	default:
		err = errors.New("usage: go_peer client ADDR CALLS | go_peer server")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// Command healthcheck prints how GitOps tools judge a Kubernetes object read from stdin (YAML or JSON),
// using the code those tools run:
//
//	healthcheck kstatus            kstatus (sigs.k8s.io/cli-utils), as Flux and kpt compute it
//	healthcheck argocd SCRIPT.lua  an Argo CD health script, run in gopher-lua as Argo CD runs it
//
// Each prints one JSON line: {"status": ..., "message": ...}.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	kjson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
)

type verdict struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	if len(os.Args) < 2 {
		fail("usage: healthcheck kstatus | healthcheck argocd SCRIPT.lua  (the object on stdin)")
	}
	raw, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail("reading stdin: %v", err)
	}
	// Through JSON with apimachinery's decoder: whole numbers become int64, as the API machinery expects.
	document, err := yaml.YAMLToJSON(raw)
	if err != nil {
		fail("parsing the object: %v", err)
	}
	obj := map[string]interface{}{}
	if err := kjson.Unmarshal(document, &obj); err != nil {
		fail("parsing the object: %v", err)
	}
	var out verdict
	switch os.Args[1] {
	case "kstatus":
		out, err = kstatusOf(obj)
	case "argocd":
		if len(os.Args) != 3 {
			fail("usage: healthcheck argocd SCRIPT.lua")
		}
		out, err = argocdHealthOf(obj, os.Args[2])
	default:
		fail("unknown check %q", os.Args[1])
	}
	if err != nil {
		fail("%v", err)
	}
	line, _ := json.Marshal(out)
	fmt.Println(string(line))
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(2)
}

func kstatusOf(obj map[string]interface{}) (verdict, error) {
	result, err := status.Compute(&unstructured.Unstructured{Object: obj})
	if err != nil {
		return verdict{}, fmt.Errorf("kstatus: %w", err)
	}
	return verdict{Status: result.Status.String(), Message: result.Message}, nil
}

// argocdHealthOf runs a health script the way Argo CD's resource customizations do: the object is the
// global `obj`, and the script returns a table with `status` and `message`.
func argocdHealthOf(obj map[string]interface{}, scriptPath string) (verdict, error) {
	script, err := os.ReadFile(scriptPath)
	if err != nil {
		return verdict{}, err
	}
	// As Argo CD: no standard library but package, base and table, and a one-second budget.
	state := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer state.Close()
	for name, open := range map[string]lua.LGFunction{
		lua.LoadLibName: lua.OpenPackage, lua.BaseLibName: lua.OpenBase, lua.TabLibName: lua.OpenTable,
	} {
		if err := state.CallByParam(lua.P{Fn: state.NewFunction(open), NRet: 0, Protect: true},
			lua.LString(name)); err != nil {
			return verdict{}, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	state.SetContext(ctx)
	state.SetGlobal("obj", toLua(state, obj))
	if err := state.DoString(string(script)); err != nil {
		return verdict{}, fmt.Errorf("lua: %w", err)
	}
	returned, ok := state.Get(-1).(*lua.LTable)
	if !ok {
		return verdict{}, fmt.Errorf("the script returned %s, not a table", state.Get(-1).Type())
	}
	out := verdict{
		Status:  lua.LVAsString(returned.RawGetString("status")),
		Message: lua.LVAsString(returned.RawGetString("message")),
	}
	// Argo CD shows any status outside its set as Unknown.
	switch out.Status {
	case "Healthy", "Progressing", "Suspended", "Degraded", "Missing", "Unknown":
	default:
		out = verdict{Status: "Unknown", Message: "Lua returned an invalid health status"}
	}
	return out, nil
}

// toLua converts decoded JSON into Lua values (objects and arrays become tables, arrays 1-based).
func toLua(state *lua.LState, value interface{}) lua.LValue {
	switch v := value.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case []interface{}:
		table := state.NewTable()
		for _, item := range v {
			table.Append(toLua(state, item))
		}
		return table
	case map[string]interface{}:
		table := state.NewTable()
		for key, item := range v {
			table.RawSetString(key, toLua(state, item))
		}
		return table
	default:
		return lua.LString(fmt.Sprint(v))
	}
}

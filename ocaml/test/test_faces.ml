(* One table of xenopsd argv lists through both faces: Xenguest.build_of_argv on a simulated
   host, and the binary spawned as xenopsd spawns it (with -sim, the control fd on a pipe).
   Both must give the same result: or error: line; the table also pins what it is.
   Usage: test_faces.exe PATH-TO-XENGUEST *)

let binary =
  let b = if Array.length Sys.argv > 1 then Sys.argv.(1) else "xenguest" in
  (* create_process searches PATH for a name without a slash. *)
  if Filename.is_relative b then Filename.concat (Sys.getcwd ()) b else b
let hvmloader = "/usr/lib/xen-4.17/boot/hvmloader"
let shim = "/usr/lib/xen-4.17/boot/xen-shim"
let spec = "nodes=2,node_mib=2048"
let mem_mib = 512

(* What the binary's -sim writes for every domain (xenopsd's platform defaults). *)
let platform =
  [ ("platform/vcpu/number", "1"); ("platform/vcpu/current", "1"); ("platform/acpi_s3", "0");
    ("platform/acpi_s4", "0") ]

let dir =
  let d = Filename.concat (Filename.get_temp_dir_name ()) (Printf.sprintf "faces-%d" (Unix.getpid ())) in
  Unix.mkdir d 0o700;
  d

let file name contents =
  let path = Filename.concat dir name in
  let oc = open_out_bin path in
  output_string oc contents;
  close_out oc;
  path

let rec mkdir_p d =
  if not (Sys.file_exists d) then (
    mkdir_p (Filename.dirname d);
    Unix.mkdir d 0o700)

(* A passthrough GPU with one 16 MiB BAR, at both addresses the table names. *)
let () =
  List.iter
    (fun sbdf ->
      let d = Filename.concat dir ("pci/" ^ sbdf) in
      mkdir_p d;
      let zero = "0x0000000000000000 0x0000000000000000 0x0000000000000000\n" in
      ignore
        (file ("pci/" ^ sbdf ^ "/resource")
           ("0x00000000e0000000 0x00000000e0ffffff 0x0000000000040200\n"
           ^ String.concat "" (List.init 6 (fun _ -> zero))));
      ignore (file ("pci/" ^ sbdf ^ "/vendor") "0x10de\n");
      ignore (file ("pci/" ^ sbdf ^ "/device") "0x1db4\n"))
    [ "0000:03:00.0"; "0000:04:00.0" ];
  (* Read by Sim.create (HostPaths::from_env) and inherited by the spawned binary. *)
  Unix.putenv "XENGUEST_IPXE" (file "ipxe.bin" (String.make 8192 'U'));
  Unix.putenv "XENGUEST_SYSFS_PCI" (Filename.concat dir "pci")

let devnull = Unix.openfile "/dev/null" [ Unix.O_RDWR; Unix.O_CLOEXEC ] 0

(* The binary's control-fd output for [args] (control fd 1 = the pipe). *)
let spawn args keys =
  let keys = List.concat_map (fun (k, v) -> [ "-sim-key"; k ^ "=" ^ v ]) keys in
  let argv = Array.of_list ((binary :: args) @ [ "-sim"; spec ] @ keys) in
  let rd, wr = Unix.pipe ~cloexec:true () in
  let pid = Unix.create_process binary argv devnull wr devnull in
  Unix.close wr;
  let ic = Unix.in_channel_of_descr rd in
  let buf = Buffer.create 128 in
  (try
     while true do
       Buffer.add_channel buf ic 1
     done
   with End_of_file -> ());
  close_in ic;
  let out = Buffer.contents buf in
  ignore (Unix.waitpid [] pid);
  out

(* The in-process face, on a host prepared as the binary's -sim prepares it. *)
let in_process ~pv args keys =
  let sim = Xenguest_sim.create ~spec in
  let domid = Xenguest_sim.create_domain sim ~hvm:(not pv) ~vcpus:1 ~max_mem_kib:((mem_mib * 1024) + 1024) () in
  assert (domid = 1);
  List.iter (fun (k, v) -> Xenguest_sim.write sim (Printf.sprintf "/local/domain/%d/%s" domid k) v) platform;
  List.iter (fun (k, v) -> Xenguest_sim.write sim k v) keys;
  match Xenguest.build_of_argv (Xenguest_sim.handle sim) args with
  | r, _ ->
      Printf.sprintf "result:%nd %nd%s\n" r.store_mfn r.console_mfn
        (match r.protocol with Some p -> " " ^ p | None -> "")
  | exception Xenguest.Error { message; _ } -> "error:" ^ message ^ "\n"

let xenopsd mode_words tail =
  [ "-controloutfd"; "1"; "-controlinfd"; "0" ] @ mode_words
  @ [ "-domid"; "1"; "-store_port"; "1"; "-store_domid"; "0"; "-console_port"; "2";
      "-console_domid"; "0"; "-mem_max_mib"; string_of_int mem_mib; "-mem_start_mib";
      string_of_int mem_mib ]
  @ tail

let () =
  List.iter
    (fun f -> if not (Sys.file_exists f) then failwith (f ^ " missing: run `make deps`"))
    [ hvmloader; shim; binary ];
  let m = file "initrd" (String.make 20000 '\xa5') in
  let big = file "vmlinux" (String.make (2 lsl 20) '\000') in
  let hvm = [ "-mode"; "hvm_build"; "-image"; hvmloader ] in
  let pvh image = [ "-mode"; "pvh_build"; "-image"; image; "-cmdline"; "pv-shim console=xen";
                    "-features"; ""; "-flags"; "0" ] in
  let eleven = List.concat (List.init 11 (fun _ -> [ "-module"; m ])) in
  let limit = [ ("/mh/limits/pv-kernel-max_size", "0x100000") ] in
  let ok = "result:1044476 1044479\n" in
  (* name, PV?, argv, absolute xenstore keys, the expected line (a prefix when it ends ':') *)
  let cases =
    [
      ("hvm", false, xenopsd hvm [], [], ok);
      ( "hvm, vGPU, node, force, BB:DD.F passthrough", false,
        xenopsd hvm [ "-vgpu"; "-mem_pnode"; "0"; "--force"; "-pci_passthrough"; "0000:03:00.0,04:00.0" ],
        [], "result:" );
      ( "bad PCI token", false, xenopsd hvm [ "-pci_passthrough"; "0000:03:00.0,zz" ], [],
        "error:xenguest: main: [22] bad PCI address 'zz' in -pci_passthrough (want SSSS:BB:DD.F or BB:DD.F, hex)\n" );
      ( "pvh, modules with and without -cmdline", false,
        xenopsd (pvh shim) [ "-module"; m; "-cmdline"; "root=/dev/xvda1"; "-module"; m ], [], ok );
      ( "pvh, 11 modules", false, xenopsd (pvh shim) eleven, [],
        "error:xenguest: pvh_build: [22] 11 modules given: a PVH guest takes at most 10\n" );
      ( "pvh, kernel over a 0x100000 limit", false, xenopsd (pvh big) [], limit,
        Printf.sprintf "error:xenguest: xc_dom_kernel_file: [27] %s: 2097152 bytes exceeds the limit of 1048576\n" big );
      ( "missing -image", false, xenopsd [ "-mode"; "hvm_build" ] [], [],
        "error:xenguest: missing command line options\n" );
      ( "unknown option", false, xenopsd hvm [ "-bogus" ], [],
        "error:xenguest: invalid command line '-bogus'\n" );
      ( "pv, missing kernel", true,
        xenopsd [ "-mode"; "linux_build"; "-image"; "/nonexistent/vmlinuz"; "-cmdline"; ""; "-ramdisk"; "";
                  "-features"; ""; "-flags"; "0" ] [], [],
        "error:xenguest: xc_dom_kernel_file: [2] /nonexistent/vmlinuz: No such file or directory\n" );
    ]
  in
  let failures =
    List.filter_map
      (fun (name, pv, args, keys, want) ->
        let b = spawn args keys and o = in_process ~pv args keys in
        let prefix = String.length want > 0 && want.[String.length want - 1] = ':' in
        let matches s = if prefix then String.starts_with ~prefix:want s else s = want in
        if b <> o then Some (Printf.sprintf "%s: the faces disagree:\n  binary    %S\n  in-process %S" name b o)
        else if not (matches b) then Some (Printf.sprintf "%s: %S, want %S" name b want)
        else (
          Printf.printf "ok: %s: %s" name b;
          None))
      cases
  in
  (* The binary's own host options have no meaning in-process: refused, not ignored. *)
  let sim_refused =
    match in_process ~pv:false (xenopsd hvm [ "-sim"; spec ]) [] with
    | "error:xenguest: parse_options: [22] -sim and -sim-key are the binary's: here the handle is the host\n" -> []
    | other -> [ "-sim in build_of_argv: " ^ other ]
  in
  let failures = failures @ sim_refused in
  ignore (Sys.command (Printf.sprintf "rm -rf %s" (Filename.quote dir)));
  match failures with
  | [] -> ()
  | fs ->
      List.iter prerr_endline fs;
      exit 1

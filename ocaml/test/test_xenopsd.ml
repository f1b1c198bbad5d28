(* Xenguest_xenopsd with xenopsd's argv shapes (xapi-project/xen-api e2ee48d6,
   ocaml/xenopsd/xc/domain.ml lines 1254-1336: xenguest_args_hvm, _pv, _pvh; then --force and
   the -pci_passthrough extras of ocaml/xenopsd/lib/xenops_server.ml lines 1921-1929), each
   through the in-process path on a simulated host and through the fork/exec path (the
   binary with -sim), both checked against the same expected frames or exception. Then the
   control-fd protocol of the exec path against scripted helpers.
   Usage: test_xenopsd.exe PATH-TO-XENGUEST *)

module X = Xenguest_xenopsd

let binary =
  let b = if Array.length Sys.argv > 1 then Sys.argv.(1) else "xenguest" in
  if Filename.is_relative b then Filename.concat (Sys.getcwd ()) b else b

let hvmloader = "/usr/lib/xen-4.17/boot/hvmloader"
let shim = "/usr/lib/xen-4.17/boot/xen-shim"
let spec = "nodes=2,node_mib=2048"

let dir =
  let d = Filename.concat (Filename.get_temp_dir_name ()) (Printf.sprintf "xenopsd-%d" (Unix.getpid ())) in
  Unix.mkdir d 0o700;
  d

let file ?(perm = 0o600) name contents =
  let path = Filename.concat dir name in
  let oc = open_out_gen [ Open_wronly; Open_creat; Open_trunc; Open_binary ] perm path in
  output_string oc contents;
  close_out oc;
  path

let rec mkdir_p d =
  if not (Sys.file_exists d) then (
    mkdir_p (Filename.dirname d);
    Unix.mkdir d 0o700)

(* A passthrough GPU with one 16 MiB BAR at both addresses the PCI case names (as in
   test_faces.ml); the spawned binary inherits the environment. *)
let () =
  List.iter
    (fun sbdf ->
      mkdir_p (Filename.concat dir ("pci/" ^ sbdf));
      let zero = "0x0000000000000000 0x0000000000000000 0x0000000000000000\n" in
      ignore
        (file ("pci/" ^ sbdf ^ "/resource")
           ("0x00000000e0000000 0x00000000e0ffffff 0x0000000000040200\n"
           ^ String.concat "" (List.init 6 (fun _ -> zero))));
      ignore (file ("pci/" ^ sbdf ^ "/vendor") "0x10de\n");
      ignore (file ("pci/" ^ sbdf ^ "/device") "0x1db4\n"))
    [ "0000:03:00.0"; "0000:04:00.0" ];
  Unix.putenv "XENGUEST_IPXE" (file "ipxe.bin" (String.make 8192 'U'));
  Unix.putenv "XENGUEST_SYSFS_PCI" (Filename.concat dir "pci")

(* xenopsd's argv, built as domain.ml builds it (domid 1, store port 1, console port 2). *)
let base ~mib ?pnode () =
  [ "-domid"; "1"; "-store_port"; "1"; "-store_domid"; "0"; "-console_port"; "2"; "-console_domid";
    "0"; "-mem_max_mib"; string_of_int mib; "-mem_start_mib"; string_of_int mib ]
  @ match pnode with Some n -> [ "-mem_pnode"; string_of_int n ] | None -> []

let force_arg force = if force then [ "--force" ] else []

let hvm ?(mib = 512) ?(image = hvmloader) ?(vgpu = false) ?pnode ?(force = false) ?(extras = []) () =
  [ "-mode"; "hvm_build"; "-image"; image ]
  @ (if vgpu then [ "-vgpu" ] else [])
  @ base ~mib ?pnode () @ force_arg force @ extras

let pv ?(mib = 512) ~image ~cmdline ?ramdisk () =
  [ "-mode"; "linux_build"; "-image"; image; "-cmdline"; cmdline; "-ramdisk";
    (match ramdisk with Some r -> r | None -> ""); "-features"; ""; "-flags"; "0" ]
  @ base ~mib ()

let pvh ?(mib = 512) ~image ~cmdline ~modules () =
  let module_args =
    List.concat_map (fun (m, c) -> "-module" :: m :: (match c with Some c -> [ "-cmdline"; c ] | None -> [])) modules
  in
  [ "-mode"; "pvh_build"; "-image"; image; "-cmdline"; cmdline; "-features"; ""; "-flags"; "0" ]
  @ module_args @ base ~mib ()

type outcome = Frames of nativeint * nativeint | Raised of exn

let show = function
  | Frames (s, c) -> Printf.sprintf "(%nd, %nd)" s c
  | Raised e -> Printexc.to_string e

let outcome f = match f () with s, c -> Frames (s, c) | exception e -> Raised e

(* No child left behind: every exec reaps its helper. *)
let no_children () =
  match Unix.waitpid [ Unix.WNOHANG ] (-1) with
  | exception Unix.Unix_error (Unix.ECHILD, _, _) -> true
  | _ -> false

(* The in-process path, on a host prepared as the binary's -sim prepares it. *)
type check = Key of string * string  (* a xenstore write the build made *) | Node0  (* RAM on node 0 *)

let show_check = function Key (k, v) -> Printf.sprintf "%s=%s" k v | Node0 -> "RAM on node 0"

let in_process ~pv ~mib ~checks argv =
  let sim = Xenguest_sim.create ~spec in
  let domid = Xenguest_sim.create_domain sim ~hvm:(not pv) ~vcpus:1 ~max_mem_kib:((mib * 1024) + 1024) () in
  assert (domid = 1);
  List.iter
    (fun (k, v) -> Xenguest_sim.write sim (Printf.sprintf "/local/domain/%d/platform/%s" domid k) v)
    [ ("vcpu/number", "1"); ("vcpu/current", "1"); ("acpi_s3", "0"); ("acpi_s4", "0") ];
  let r = outcome (fun () -> X.build (Xenguest_sim.handle sim) argv) in
  (match Xenguest_sim.check_accounting sim with Ok () -> () | Error e -> failwith ("accounting: " ^ e));
  let holds = function
    | Key (k, v) -> Xenguest_sim.read sim k = Some v
    | Node0 -> ( match (Xenguest_sim.domain sim domid).pages_by_node with [ _; n1 ] -> n1 < 64 | _ -> false)
  in
  (r, List.filter (fun c -> not (holds c)) checks)

(* The fork/exec path: the binary's -sim host, and its -report (JSON) for the checks. *)
let fork_exec ~checks argv =
  let report = Filename.concat dir "report.json" in
  if Sys.file_exists report then Sys.remove report;
  let r =
    outcome (fun () ->
        X.build ~xenguest:binary (Xenguest_sim.handle (Xenguest_sim.create ~spec)) (argv @ [ "-sim"; spec; "-report"; report ]))
  in
  let json =
    if not (Sys.file_exists report) then ""
    else
      let ic = open_in_bin report in
      let s = really_input_string ic (in_channel_length ic) in
      close_in ic;
      String.concat "" (String.split_on_char ' ' (String.concat "" (String.split_on_char '\n' s)))
  in
  let contains sub =
    let n = String.length sub in
    let rec go i = i + n <= String.length json && (String.sub json i n = sub || go (i + 1)) in
    go 0
  in
  let holds = function
    | Key (k, v) -> contains (Printf.sprintf "[%S,%S]" k v)
    | Node0 -> contains "\"exact_node\":0"
  in
  (r, List.filter (fun c -> not (holds c)) checks)

let failures = ref []
let fail fmt = Printf.ksprintf (fun s -> failures := s :: !failures) fmt

let check name want got =
  if got = want then Printf.printf "ok: %s: %s\n%!" name (show got)
  else fail "%s: %s, want %s" name (show got) (show want)

let helper_error text = Raised (Failure ("Error from xenguesthelper: " ^ text))

let builds () =
  List.iter
    (fun f -> if not (Sys.file_exists f) then failwith (f ^ " missing: run `make deps`"))
    [ hvmloader; shim; binary; "/usr/lib/grub/x86_64-xen" ];
  let pvgrub = Filename.concat dir "pvgrub.elf" in
  let cmd =
    Printf.sprintf "grub-mkimage -O x86_64-xen -o %s -p '(xen/xvda,msdos1)/boot/grub' normal" (Filename.quote pvgrub)
  in
  if Sys.command cmd <> 0 then failwith cmd;
  let ramdisk = file "ramdisk" (String.init 300_000 (fun i -> Char.chr (i * 13 mod 251))) in
  let m = file "initrd" (String.make 20000 '\xa5') in
  let ok = Frames (1044476n, 1044479n) in
  let hole size = Key ("/local/domain/1/vm-data/mmio-hole-size", size) in
  (* name, PV?, MiB, xenopsd's argv, what both paths must give, what the build must have done *)
  let cases =
    [
      ("hvm", false, 512, hvm (), ok, [ hole "268435456" ]);
      ( "hvm, -vgpu -mem_pnode 0 --force", false, 512, hvm ~vgpu:true ~pnode:0 ~force:true (), ok,
        [ Key ("/local/domain/1/vm-data/vram-reserved-addr", "fb000000");
          Key ("/local/domain/1/vm-data/vram-reserved-size", "16777216"); Node0 ] );
      ( "hvm, -pci_passthrough a,b", false, 512,
        hvm ~force:true ~extras:[ "-pci_passthrough"; "0000:03:00.0,04:00.0" ] (), ok, [ hole "536870912" ] );
      (* The ramdisk moves the rings: 74 pages further than without one. *)
      ( "pv, pvgrub without a ramdisk (-ramdisk \"\")", true, 512,
        pv ~image:pvgrub ~cmdline:"root=/dev/xvda1 console=hvc0" (), Frames (785768n, 785769n), [] );
      ( "pv, pvgrub with a ramdisk", true, 512,
        pv ~image:pvgrub ~cmdline:"root=/dev/xvda1 console=hvc0" ~ramdisk (), Frames (785842n, 785843n), [] );
      ( "pvh, modules with and without -cmdline", false, 512,
        pvh ~image:shim ~cmdline:"pv-shim console=xen" ~modules:[ (m, Some "root=/dev/xvda1"); (m, None) ] (), ok, [] );
      ( "pvh, modules without -cmdline", false, 512,
        pvh ~image:shim ~cmdline:"pv-shim console=xen" ~modules:[ (m, None); (m, None) ] (), ok, [] );
      ( "missing image", false, 512, hvm ~image:"/nonexistent/hvmloader" (),
        helper_error "xenguest: xc_dom_kernel_file: [2] /nonexistent/hvmloader: No such file or directory", [] );
      ( "pv, missing kernel", true, 512, pv ~image:"/nonexistent/vmlinuz" ~cmdline:"" (),
        helper_error "xenguest: xc_dom_kernel_file: [2] /nonexistent/vmlinuz: No such file or directory", [] );
      ( "out of memory", false, 6144, hvm ~mib:6144 (),
        helper_error
          "xenguest: hvm_build: [12] the guest needs 1572864 pages but the host can give domain 1 at most 1048576 \
           (1048576 free, 0 claimed by other domains)",
        [] );
      ("bad option", false, 512, hvm ~extras:[ "-bogus" ] (), helper_error "xenguest: invalid command line '-bogus'", []);
      ( "bad PCI token", false, 512, hvm ~extras:[ "-pci_passthrough"; "0000:03:00.0,zz" ] (),
        helper_error
          "xenguest: main: [22] bad PCI address 'zz' in -pci_passthrough (want SSSS:BB:DD.F or BB:DD.F, hex)", [] );
    ]
  in
  List.iter
    (fun (name, pv, mib, argv, want, checks) ->
      let both = [ ("in-process", in_process ~pv ~mib ~checks argv); ("fork/exec", fork_exec ~checks argv) ] in
      List.iter
        (fun (path, (got, missed)) ->
          let name = Printf.sprintf "%s (%s)" name path in
          check name want got;
          List.iter (fun c -> fail "%s: not done: %s" name (show_check c)) missed)
        both;
      if not (no_children ()) then fail "%s: a child left unreaped" name)
    cases

(* A simulated host with one 512 MiB, 1-vCPU HVM domain, as xenopsd leaves it before a build. *)
let one_vcpu_domain () =
  let sim = Xenguest_sim.create ~spec in
  let domid = Xenguest_sim.create_domain sim ~vcpus:1 ~max_mem_kib:((512 * 1024) + 1024) () in
  List.iter
    (fun (k, v) -> Xenguest_sim.write sim (Printf.sprintf "/local/domain/%d/platform/%s" domid k) v)
    [ ("vcpu/number", "1"); ("vcpu/current", "1") ];
  (sim, domid)

(* A cancelled token stops the in-process path with Xenguest.Cancelled, which xenopsd's
   Xenops_task.check_cancelling turns into its Cancelled error; nothing stays claimed. *)
let cancelled () =
  let sim, _ = one_vcpu_domain () in
  let c = Xenguest.cancel_token () in
  Xenguest.cancel c;
  (match X.build ~cancel:c (Xenguest_sim.handle sim) (hvm ()) with
  | _ -> fail "cancelled: the build finished"
  | exception Xenguest.Cancelled { message; _ } ->
      Printf.printf "ok: cancelled: %s\n%!" message
  | exception e -> fail "cancelled: raised %s" (Printexc.to_string e));
  if Xenguest_sim.outstanding_claims sim <> 0 then fail "cancelled: a claim left behind"

(* The in-process path's own log lines reach ?log, as the exec path's info: lines do. *)
let logged () =
  let sim, domid = one_vcpu_domain () in
  let lines = ref [] in
  ignore (X.build ~log:(fun l -> lines := l :: !lines) (Xenguest_sim.handle sim) (hvm ()));
  let want = Printf.sprintf "domid = %d; Determined the following parameters from xenstore (HVM):" domid in
  if List.mem want !lines then Printf.printf "ok: in-process log: %d lines\n%!" (List.length !lines)
  else fail "in-process log: no %S in %d lines" want (List.length !lines)

(* The exec path's control-fd protocol, against scripted helpers. *)
let script name body = file ~perm:0o700 name ("#!/bin/bash\n" ^ body ^ "\n")

let protocol () =
  let run ?(argv = []) name body =
    let logged = ref [] in
    let r = outcome (fun () -> X.exec ~log:(fun l -> logged := l :: !logged) (script name body) argv) in
    if not (no_children ()) then fail "%s: a child left unreaped" name;
    (r, List.rev !logged)
  in
  let say lines = String.concat "\n" (List.map (fun l -> Printf.sprintf "printf '%%s\\n' %s >&$2" (Filename.quote l)) lines) in
  (* The helper's argv starts with the control fds; xenopsd's argv follows verbatim (the
     empty words too); stdin, stdout and stderr are /dev/null; the control fds work. *)
  let argv = [ "-mode"; "linux_build"; "-cmdline"; ""; "-ramdisk"; ""; "-flags"; "0" ] in
  let r, logged =
    run ~argv "argv"
      ({|[ "$1" = -controloutfd ] && [ "$3" = -controlinfd ] || exit 3
for f in 0 1 2; do [ "$(readlink /proc/$$/fd/$f)" = /dev/null ] || { echo "error:fd $f" >&$2; exit 1; }; done
got=$(shift 4; printf '%s|' "$@")
[ "$got" = '-mode|linux_build|-cmdline||-ramdisk||-flags|0|' ] || { echo "error:argv $got" >&$2; exit 1; }
[ -p /proc/$$/fd/$4 ] || { echo "error:controlinfd not a pipe" >&$2; exit 1; }
|}
      ^ say [ "info:argv ok"; "stdout:from libxenguest"; "stderr:a: b"; "result:1044476 1044479 x86_64-abi" ])
  in
  check "exec: argv, fds and the result line" (Frames (1044476n, 1044479n)) r;
  if logged <> [ "argv ok"; "from libxenguest"; "a: b" ] then fail "exec: logged %s" (String.concat "; " logged);
  let cases =
    [
      ("hex frames", say [ "result:0x10 0x20" ], Frames (16n, 32n));
      ("one frame", say [ "result:77" ], Raised X.Domain_build_failed);
      ("empty result", say [ "result:" ], Raised X.Domain_build_failed);
      ("unknown prefix", say [ "info:x"; "progress:50" ], helper_error "uncaught exception");
      ("no colon", say [ "garbage" ], Raised (Failure "Failed to parse message from xenguesthelper [garbage]"));
      ("suspend", say [ "suspend:" ], Raised (Failure "xenguesthelper protocol failure; not expecting Suspend"));
      ("EOF", "exit 0", Raised End_of_file);
      ("EOF after info", say [ "info:starting" ] ^ "\nexit 1", Raised End_of_file);
      ("first line wins", say [ "error:xenguest: one"; "result:1 2" ], helper_error "xenguest: one");
      ( "hvm_build_mem", say [ "error:hvm_build_mem 12 Could not allocate" ],
        Raised (X.Domain_builder_error ("hvm_build_mem", 12, "Could not allocate")) );
      ( "hvm_build", say [ "error:hvm_build -1 a  b" ], Raised (X.Domain_builder_error ("hvm_build", -1, "a  b")) );
      ( "xc_dom_allocate", say [ "error:xc_dom_allocate 1 no" ], Raised (X.Xenctrl_dom_allocate_failure (1, "no")) );
      ( "xc_dom_linux_build", say [ "error:xc_dom_linux_build 22 bad kernel" ],
        Raised (X.Xenctrl_dom_linux_build_failure (22, "bad kernel")) );
      ( "xc_domain_restore", say [ "error:xc_domain_restore 5 " ],
        Raised (X.Xenctrl_domain_restore_failure (5, "")) );
      ("a word alone", say [ "error:hvm_build" ], helper_error "hvm_build");
      ("code not a number", say [ "error:hvm_build x y" ], Raised (Failure "int_of_string"));
      ("error text with colons", say [ "error:xenguest: main: [22] x" ], helper_error "xenguest: main: [22] x");
    ]
  in
  List.iteri
    (fun i (name, body, want) -> check ("exec: " ^ name) want (fst (run (Printf.sprintf "s%d" i) body)))
    cases;
  check "exec: a path that cannot run" (Raised End_of_file)
    (outcome (fun () -> X.exec "/nonexistent/xenguest" []));
  if not (no_children ()) then fail "exec of a missing path: a child left unreaped";
  (* The same mapping for the in-process path's Xenguest.Error messages. *)
  check "raise_of_error: a binary text" (helper_error "xenguest: hvm_build: [12] x")
    (outcome (fun () -> X.raise_of_error "xenguest: hvm_build: [12] x"));
  check "raise_of_error: xc_domain_save" (Raised (X.Xenctrl_domain_save_failure (3, "s")))
    (outcome (fun () -> X.raise_of_error "xc_domain_save 3 s"));
  check "raise_of_error: xc_domain_resume" (Raised (X.Xenctrl_domain_resume_failure (4, "r t")))
    (outcome (fun () -> X.raise_of_error "xc_domain_resume 4 r t"))

let () =
  (try
     builds ();
     cancelled ();
     logged ();
     protocol ()
   with e -> fail "uncaught %s" (Printexc.to_string e));
  ignore (Sys.command (Printf.sprintf "rm -rf %s" (Filename.quote dir)));
  match List.rev !failures with
  | [] -> print_endline "all passed"
  | fs ->
      List.iter prerr_endline fs;
      exit 1

; Inno Setup script: installs the PyInstaller folder (dist\benchdata) per machine.
;   1. On Windows: bash packaging/build.sh  (or the same pip/PyInstaller steps in PowerShell)
;   2. iscc packaging\windows\benchdata.iss   ->  dist\BenchDataSetup-<version>.exe
; Optional task: run the capture service at boot (install-service.ps1).
; UNTESTED: written without a Windows machine (see packaging/README.md).
#define AppName "Bench Data Manager"
#define AppVersion GetEnv("BENCHDATA_VERSION")
#if AppVersion == ""
  #define AppVersion "0.1.0"
#endif

[Setup]
AppId={{6F1C2E4B-7A0B-4C55-9E3D-BD2A1C0E5A71}
AppName={#AppName}
AppVersion={#AppVersion}
AppPublisher=Lab IT
DefaultDirName={autopf}\BenchData
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
PrivilegesRequired=admin
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir=..\..\dist
OutputBaseFilename=BenchDataSetup-{#AppVersion}
Compression=lzma2
SolidCompression=yes
WizardStyle=modern
UninstallDisplayIcon={app}\benchdata-gui.exe
; The data (store, files, logs) lives in the user's or the service's data folder and is
; never removed by the uninstaller.

[Tasks]
Name: "desktopicon"; Description: "Create a desktop shortcut"; Flags: unchecked
Name: "service"; Description: "Run the capture service at boot (even when nobody is logged in)"; Flags: unchecked
Name: "path"; Description: "Add benchdata to PATH"; Flags: unchecked

[Files]
Source: "..\..\dist\benchdata\*"; DestDir: "{app}"; Flags: recursesubdirs createallsubdirs ignoreversion
Source: "install-service.ps1"; DestDir: "{app}"; Flags: ignoreversion
Source: "..\..\docs\operations.md"; DestDir: "{app}\docs"; Flags: ignoreversion skipifsourcedoesntexist

[Icons]
Name: "{group}\{#AppName}"; Filename: "{app}\benchdata-gui.exe"
Name: "{group}\Bench Data Manager doctor"; Filename: "{cmd}"; Parameters: "/k ""{app}\benchdata.exe"" doctor"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\benchdata-gui.exe"; Tasks: desktopicon

[Registry]
Root: HKLM; Subkey: "SYSTEM\CurrentControlSet\Control\Session Manager\Environment"; ValueType: expandsz; ValueName: "Path"; ValueData: "{olddata};{app}"; Tasks: path; Check: NeedsAddPath(ExpandConstant('{app}'))

[Run]
Filename: "powershell.exe"; Parameters: "-NoProfile -ExecutionPolicy Bypass -File ""{app}\install-service.ps1"" -InstallDir ""{app}"""; Tasks: service; Flags: runhidden waituntilterminated; StatusMsg: "Registering the capture service..."
; An upgrade stopped the service (PrepareToInstall); start it again if it is registered and
; the service task above did not just (re)register and start it.
Filename: "{sys}\schtasks.exe"; Parameters: "/Run /TN ""BenchData Capture Service"""; Tasks: not service; Flags: runhidden; Check: ServiceTaskExists
Filename: "{app}\benchdata-gui.exe"; Description: "Open Bench Data Manager"; Flags: postinstall nowait skipifsilent unchecked

[UninstallRun]
Filename: "powershell.exe"; Parameters: "-NoProfile -ExecutionPolicy Bypass -File ""{app}\install-service.ps1"" -Uninstall"; Flags: runhidden; RunOnceId: "RemoveBenchDataTask"

[Code]
function ServiceTaskExists: Boolean;
var
  ResultCode: Integer;
begin
  Result := Exec(ExpandConstant('{sys}\schtasks.exe'), '/Query /TN "BenchData Capture Service"',
    '', SW_HIDE, ewWaitUntilTerminated, ResultCode) and (ResultCode = 0);
end;

{ Files in use cannot be replaced: stop the capture service before an upgrade copies files.
  (The window is closed through the Restart Manager, CloseApplications=yes by default.) }
function PrepareToInstall(var NeedsRestart: Boolean): String;
var
  ResultCode: Integer;
begin
  if ServiceTaskExists then
    Exec(ExpandConstant('{sys}\schtasks.exe'), '/End /TN "BenchData Capture Service"',
      '', SW_HIDE, ewWaitUntilTerminated, ResultCode);
  Result := '';
end;

function NeedsAddPath(Dir: string): Boolean;
var
  OrigPath: string;
begin
  if not RegQueryStringValue(HKEY_LOCAL_MACHINE,
    'SYSTEM\CurrentControlSet\Control\Session Manager\Environment', 'Path', OrigPath) then
  begin
    Result := True;
    exit;
  end;
  Result := Pos(';' + Uppercase(Dir) + ';', ';' + Uppercase(OrigPath) + ';') = 0;
end;

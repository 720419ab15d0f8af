<#
.SYNOPSIS
  Run `benchdata run` at boot under Task Scheduler, restarted when it fails.

.DESCRIPTION
  Registers the scheduled task "BenchData Capture Service": starts at system start-up
  (no one needs to log in), runs as -User (default SYSTEM; or an account you name, which
  needs the "Log on as a batch job" right), never stops for running long, and is started
  again within 5 minutes whenever `benchdata run` has exited (crash, error, kill).

  Why a repeating trigger: Task Scheduler's RestartCount/RestartInterval only retry a task
  that failed to *start* (MS-TSCH 2.5.4.2); a process that exits with an error later is not
  restarted by them. The trigger below starts the task every 5 minutes; while it is still
  running, MultipleInstances IgnoreNew makes that a no-op. A second service on the same
  store exits at once anyway (service.lock), so nothing can start two services.

  UNTESTED: written without a Windows machine (see packaging/README.md).

  BENCHDATA_HOME is set for the task's user (machine-wide) so the service and the people
  using the GUI/CLI on this PC agree on one store. Folders on network shares must be
  reachable by that account (use UNC paths in watch rules, not mapped drive letters).

.EXAMPLE
  .\install-service.ps1 -InstallDir "C:\Program Files\BenchData" -DataHome "D:\BenchData"
.EXAMPLE
  .\install-service.ps1 -User "LAB\svc-benchdata" -Password (Read-Host -AsSecureString)
.EXAMPLE
  .\install-service.ps1 -Operators "LAB\Bench operators"
.EXAMPLE
  .\install-service.ps1 -Uninstall
#>
[CmdletBinding()]
param(
    [string]$InstallDir = $PSScriptRoot,
    [string]$DataHome = "$env:ProgramData\BenchData",
    [string]$User = "SYSTEM",
    [SecureString]$Password,
    [string]$TaskName = "BenchData Capture Service",
    # Who may write the shared store besides the service ("" to grant nobody).
    [string]$Operators = "*S-1-5-32-545",
    [switch]$Uninstall
)
$ErrorActionPreference = "Stop"

if ($Uninstall) {
    if (Get-ScheduledTask -TaskName $TaskName -ErrorAction SilentlyContinue) {
        Stop-ScheduledTask -TaskName $TaskName -ErrorAction SilentlyContinue
        Unregister-ScheduledTask -TaskName $TaskName -Confirm:$false
        Write-Host "Removed scheduled task '$TaskName' (data in $DataHome is kept)."
    }
    return
}

$exe = Join-Path $InstallDir "benchdata.exe"
if (-not (Test-Path $exe)) { throw "benchdata.exe not found in $InstallDir; pass -InstallDir" }

New-Item -ItemType Directory -Force -Path $DataHome | Out-Null
# The service (SYSTEM) creates the store; the people who open the window or the CLI on this
# PC use the same store (BENCHDATA_HOME below) and must be able to write it too. Files that
# SYSTEM creates under ProgramData are read-only to other users, so grant -Operators
# (default: the local Users group, by its well-known SID) Modify on the whole folder.
if ($Operators) {
    & icacls.exe $DataHome /grant "${Operators}:(OI)(CI)M" /T /Q | Out-Null
    if ($LASTEXITCODE -ne 0) { throw "icacls could not grant $Operators access to $DataHome" }
}
[Environment]::SetEnvironmentVariable("BENCHDATA_HOME", $DataHome, "Machine")

# The task runs cmd so BENCHDATA_HOME is set even before the machine environment reloads.
$action = New-ScheduledTaskAction -Execute "cmd.exe" `
    -Argument "/c set BENCHDATA_HOME=$DataHome&& `"$exe`" run" -WorkingDirectory $InstallDir
$atBoot = New-ScheduledTaskTrigger -AtStartup
# Restart after an exit: start again every 5 minutes, for ever (no -RepetitionDuration means
# indefinitely on Windows 10 / Server 2016 and later).
$watchdog = New-ScheduledTaskTrigger -Once -At (Get-Date).AddMinutes(1) `
    -RepetitionInterval (New-TimeSpan -Minutes 5)
$trigger = @($atBoot, $watchdog)
# RestartCount/RestartInterval: retries when the task could not start at all.
$settings = New-ScheduledTaskSettingsSet `
    -RestartCount 999 -RestartInterval (New-TimeSpan -Minutes 1) `
    -ExecutionTimeLimit ([TimeSpan]::Zero) `
    -MultipleInstances IgnoreNew `
    -AllowStartIfOnBatteries -DontStopIfGoingOnBatteries -StartWhenAvailable

if ($User -eq "SYSTEM") {
    $principal = New-ScheduledTaskPrincipal -UserId "SYSTEM" -LogonType ServiceAccount -RunLevel Limited
    Register-ScheduledTask -TaskName $TaskName -Action $action -Trigger $trigger `
        -Settings $settings -Principal $principal -Force | Out-Null
} else {
    if (-not $Password) { $Password = Read-Host "Password for $User" -AsSecureString }
    $plain = [Runtime.InteropServices.Marshal]::PtrToStringAuto(
        [Runtime.InteropServices.Marshal]::SecureStringToBSTR($Password))
    Register-ScheduledTask -TaskName $TaskName -Action $action -Trigger $trigger `
        -Settings $settings -User $User -Password $plain -RunLevel Limited -Force | Out-Null
    $plain = $null
}
Start-ScheduledTask -TaskName $TaskName
Write-Host "Registered and started '$TaskName' ($exe run, BENCHDATA_HOME=$DataHome)."
Write-Host "Check it with: `"$exe`" doctor   and   `"$exe`" logs -n 50"
